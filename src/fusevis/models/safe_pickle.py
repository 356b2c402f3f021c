"""Reading pickled PyTorch checkpoints without executing any code from the file.

The original FuseVis saved whole modules with ``torch.save(model)``: a pickle whose
classes live in ``__main__``. Unpickling such a file normally imports and calls whatever
the pickle names, which lets a crafted file run any command. This module replaces every
class and function the pickle asks for with inert stand-ins: tensors are rebuilt from the
raw storage bytes by our own code, containers are plain Python containers, and module
objects become :class:`ModuleRecord` objects that only hold their attribute dictionary.
A pickle that refers to anything else (``os.system``, ``builtins.eval``, ...) is refused
before it is called.

Both of PyTorch's formats are read: the legacy one (a sequence of pickles followed by the
raw storages) and the zip one (``data.pkl`` plus ``data/<key>`` entries).
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, BinaryIO

import torch

from fusevis.errors import ModelError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}

_MODULE_PREFIXES = ("__main__", "torch.nn.modules.")


class ModuleRecord:
    """An inert stand-in for a pickled ``nn.Module``: its class name and attributes."""

    module_path: str = ""
    class_name: str = ""

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slots) form
            state = {**(state[0] or {}), **(state[1] or {})}
        if not isinstance(state, dict):
            raise ModelError(f"module {self.class_name} has unexpected pickled state")
        self.__dict__.update(state)

    @property
    def qualified_name(self) -> str:
        """``module.Class`` as named in the pickle."""
        return f"{self.module_path}.{self.class_name}"


_record_classes: dict[tuple[str, str], type[ModuleRecord]] = {}


def _record_class(module: str, name: str) -> type[ModuleRecord]:
    key = (module, name)
    if key not in _record_classes:
        _record_classes[key] = type(
            f"Record_{name}", (ModuleRecord,), {"module_path": module, "class_name": name}
        )
    return _record_classes[key]


class _StorageDtype:
    """Marker returned for ``torch.FloatStorage`` and friends."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


def _rebuild_tensor(
    storage: torch.Tensor, offset: int, size: tuple, stride: tuple, *_: Any
) -> torch.Tensor:
    return storage.as_strided(tuple(size), tuple(stride), offset)


def _rebuild_parameter(data: torch.Tensor, *_: Any) -> torch.Tensor:
    return data


def _no_backend() -> None:
    return None


_ALLOWED_CALLABLES = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.nn.backends.thnn", "_get_thnn_function_backend"): _no_backend,
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("__builtin__", "set"): set,
}


class _SafeUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, source: str, storages: dict[str, torch.Tensor]) -> None:
        super().__init__(file, encoding="latin1")
        self.source = source
        self.storages = storages
        self.storage_order: list[str] = []

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_CALLABLES:
            return _ALLOWED_CALLABLES[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageDtype(_STORAGE_DTYPES[name])
        if module.startswith(_MODULE_PREFIXES) and name[:1].isupper():
            return _record_class(module, name)
        raise ModelError(
            f"{self.source}: refused to load: the checkpoint refers to {module}.{name}, "
            "which is neither a tensor, a container nor a module class"
        )

    def persistent_load(self, pid: Any) -> Any:
        kind = pid[0].decode() if isinstance(pid[0], bytes) else pid[0]
        if kind == "module":  # (class, file name, source text): keep the class, ignore the text
            if isinstance(pid[1], type) and issubclass(pid[1], ModuleRecord):
                return pid[1]
            raise ModelError(f"{self.source}: module entry that is not a module class")
        if kind != "storage":
            raise ModelError(f"{self.source}: unknown persistent object {kind!r}")
        storage_type, key, _location, numel = pid[1], str(pid[2]), pid[3], int(pid[4])
        dtype = storage_type.dtype if isinstance(storage_type, _StorageDtype) else storage_type
        if not isinstance(dtype, torch.dtype):
            raise ModelError(f"{self.source}: unknown storage type {storage_type!r}")
        if key not in self.storages:
            self.storages[key] = torch.empty(numel, dtype=dtype)
            self.storage_order.append(key)
        return self.storages[key]


def _fill(storage: torch.Tensor, raw: bytes, source: str, key: str) -> None:
    expected = storage.numel() * storage.element_size()
    if len(raw) < expected:
        raise ModelError(f"{source}: checkpoint is truncated (storage {key} incomplete)")
    data = torch.frombuffer(bytearray(raw[:expected]), dtype=storage.dtype)
    storage.copy_(data)


def _load_legacy(handle: BinaryIO, source: str) -> Any:
    plain = _SafeUnpickler(handle, source, {})
    if plain.load() != LEGACY_MAGIC:
        raise ModelError(f"{source}: not a PyTorch checkpoint (bad magic number)")
    _SafeUnpickler(handle, source, {}).load()  # protocol version
    _SafeUnpickler(handle, source, {}).load()  # sys info
    storages: dict[str, torch.Tensor] = {}
    result = _SafeUnpickler(handle, source, storages).load()
    keys = _SafeUnpickler(handle, source, {}).load()
    for key in keys:
        header = handle.read(8)
        if len(header) < 8:
            raise ModelError(f"{source}: checkpoint is truncated (storage {key} missing)")
        (numel,) = struct.unpack("<q", header)
        storage = storages[str(key)]
        _fill(storage, handle.read(numel * storage.element_size()), source, str(key))
    return result


def _load_zip(path: Path, source: str) -> Any:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickle_name = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pickle_name is None:
            raise ModelError(f"{source}: zip checkpoint has no data.pkl")
        prefix = pickle_name[: -len("data.pkl")]
        storages: dict[str, torch.Tensor] = {}
        unpickler = _SafeUnpickler(io.BytesIO(archive.read(pickle_name)), source, storages)
        result = unpickler.load()
        for key, storage in storages.items():
            _fill(storage, archive.read(f"{prefix}data/{key}"), source, key)
    return result


def safe_load(path: str | Path) -> Any:
    """Load a pickled checkpoint without executing code from it.

    Returns the pickled object with tensors rebuilt, ``nn.Module`` objects replaced by
    :class:`ModuleRecord` and containers as plain Python containers.

    Raises
    ------
    ModelError
        If the file is missing, truncated, not a checkpoint, or refers to anything other
        than tensors, containers and module classes.
    """
    source = Path(path)
    if not source.is_file():
        raise ModelError(f"{source}: checkpoint not found")
    try:
        if zipfile.is_zipfile(source):
            return _load_zip(source, str(source))
        with source.open("rb") as handle:
            return _load_legacy(handle, str(source))
    except ModelError:
        raise
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        KeyError,
        AttributeError,
        struct.error,
        zipfile.BadZipFile,
        IndexError,
    ) as error:
        raise ModelError(f"{source}: not a readable PyTorch checkpoint ({error})") from None


def records_to_state_dict(obj: Any, prefix: str = "") -> OrderedDict[str, torch.Tensor]:
    """Flatten a :class:`ModuleRecord` tree (or a state-dict) into a state-dict.

    Parameters and buffers are collected under their dotted names, as ``nn.Module``
    would name them; every tensor is copied into its own contiguous memory.
    """
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    if isinstance(obj, dict):
        for key, value in obj.items():
            if isinstance(value, torch.Tensor):
                state[prefix + str(key)] = value.detach().clone().contiguous()
        return state
    if not isinstance(obj, ModuleRecord):
        raise ModelError(f"expected a module or a state-dict, found {type(obj).__name__}")
    for group in ("_parameters", "_buffers"):
        for key, value in (getattr(obj, group, None) or {}).items():
            if value is not None:
                state[prefix + key] = value.detach().clone().contiguous()
    for key, child in (getattr(obj, "_modules", None) or {}).items():
        if child is not None:
            state.update(records_to_state_dict(child, f"{prefix}{key}."))
    return state
