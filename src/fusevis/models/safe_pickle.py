"""Reading pickled PyTorch checkpoints lazily, within a budget, without executing their code.

Unpickling a checkpoint normally imports and calls whatever the pickle names, which lets a
crafted file run any command; and even PyTorch's restricted ``weights_only`` loader
allocates every storage the file claims before anything is checked. This module reads both
of PyTorch's formats — the zip one (``data.pkl`` plus ``data/<key>`` entries) and the legacy
one (a sequence of pickles followed by the raw storages) — in two steps:

1. :func:`read_checkpoint` unpickles only the pickle, with a pure-Python unpickler whose
   every operation is counted and whose every class or function is replaced by an inert
   stand-in of ours: storages become :class:`StorageRef` (dtype, key, claimed size),
   tensors :class:`TensorRef` (storage, offset, size, stride, validated against the
   storage's claimed size), module objects :class:`ModuleRecord`, NumPy scalars, arrays and
   dtypes :class:`MetadataRecord` objects that hold their raw state. Anything else a pickle
   names (``os.system``, ``builtins.eval``, ...) is refused before it is called. No storage
   byte is read.
2. :meth:`Checkpoint.read_tensors` reads the storages of the tensors a caller chose — after
   it has checked their names and shapes — within a byte budget, each zip entry through a
   capped stream, each legacy storage by seeking to it.

Every problem is a :class:`~fusevis.errors.ModelError` with one line naming the file.
"""

from __future__ import annotations

import io
import math
import pickle
import re
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

import torch

from fusevis.errors import ModelError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

#: Largest pickle (``data.pkl``, or the legacy format's pickles together) read, in bytes.
MAX_PICKLE_BYTES = 64 << 20
#: Most opcodes one file's pickles may run, and most container elements they may copy.
MAX_PICKLE_WORK = 1_000_000
#: Most tensors one checkpoint may describe.
MAX_TENSORS = 100_000
#: Deepest nesting of modules, dicts and lists below the checkpoint's root.
MAX_DEPTH = 64
#: Most containers a walk over the checkpoint may visit (shared ones count each time).
MAX_VISITS = 1_000_000
#: Most entries, and largest central directory, of a zip checkpoint.
MAX_ZIP_ENTRIES = 100_000
MAX_ZIP_DIRECTORY = 8 << 20
#: Byte budget of :func:`safe_load` and of loaders that know no model.
DEFAULT_MAX_BYTES = 512 << 20
MAX_DIMS = 32
_CHUNK = 16 << 20

_DTYPES = {
    str(dtype).removeprefix("torch."): dtype
    for dtype in (
        torch.float64,
        torch.float32,
        torch.float16,
        torch.bfloat16,
        torch.complex64,
        torch.complex128,
        torch.int64,
        torch.int32,
        torch.int16,
        torch.int8,
        torch.uint8,
        torch.bool,
        *(getattr(torch, n) for n in ("uint16", "uint32", "uint64") if hasattr(torch, n)),
    )
}

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "ComplexFloatStorage": torch.complex64,
    "ComplexDoubleStorage": torch.complex128,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "UntypedStorage": torch.uint8,
}

_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")
_CLASS_NAME = re.compile(r"[A-Z][A-Za-z0-9_]*\Z")
_NUMPY_MODULES = ("numpy", "numpy.core.multiarray", "numpy._core.multiarray")


def one_line(text: object, limit: int = 300) -> str:
    """``text`` on one line (whitespace collapsed), at most ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# --------------------------------------------------------------------------------------------
# Inert stand-ins


class ModuleRecord:
    """An inert stand-in for a pickled object of a class: its class name and attributes.

    Pickled ``nn.Module`` objects become records whose ``_parameters``, ``_buffers`` and
    ``_modules`` attributes hold the module's tensors and children.
    """

    module_path: str = ""
    class_name: str = ""

    def __init__(self) -> None:
        self.attributes: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        attributes = self.__dict__.get("attributes")
        if attributes is not None and name in attributes:
            return attributes[name]
        raise AttributeError(name)

    @property
    def qualified_name(self) -> str:
        """``module.Class`` as named in the pickle."""
        return f"{self.module_path}.{self.class_name}"

    @property
    def is_module(self) -> bool:
        """Whether the record looks like an ``nn.Module`` (it holds ``_parameters``)."""
        return "_parameters" in self.__dict__.get("attributes", {})

    def _build(self, state: Any) -> int:
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slots) form
            first, slots = state
            if not isinstance(first, dict | type(None)) or not isinstance(slots, dict | None):
                raise ModelError(f"{self.qualified_name} has unexpected pickled state")
            merged = {**(first or {}), **(slots or {})}
        elif isinstance(state, dict):
            merged = state
        else:
            raise ModelError(f"{self.qualified_name} has unexpected pickled state")
        if not all(isinstance(key, str) for key in merged):
            raise ModelError(f"{self.qualified_name} has attribute names that are not strings")
        if "attributes" not in self.__dict__:
            self.attributes = {}
        self.attributes.update(merged)
        return len(merged)


_record_classes: dict[tuple[str, str], type[ModuleRecord]] = {}


def _record_class(module: str, name: str) -> type[ModuleRecord]:
    key = (module, name)
    if key not in _record_classes:
        if len(_record_classes) > 10_000:
            _record_classes.clear()
        _record_classes[key] = type(
            f"Record_{name}", (ModuleRecord,), {"module_path": module, "class_name": name}
        )
    return _record_classes[key]


class MetadataRecord:
    """An inert stand-in for plain metadata a checkpoint carries (NumPy values and dtypes).

    Its raw pickled arguments and state are kept as they were read; nothing is decoded
    unless asked for (:meth:`item`), and then only by our own code.
    """

    def __init__(self, kind: str, *args: Any) -> None:
        self.kind = kind
        self.args = args
        self.state: Any = None

    def _build(self, state: Any) -> int:
        self.state = state
        return len(state) if isinstance(state, tuple | list | dict) else 1

    def __repr__(self) -> str:
        return f"<{self.kind} {one_line(self.args, 60)}>"

    def item(self) -> Any:
        """The Python value of a NumPy scalar of a plain numeric dtype, else ``None``."""
        if self.kind != "numpy.scalar" or len(self.args) != 2:
            return None
        dtype, raw = self.args
        if not isinstance(dtype, MetadataRecord) or not isinstance(raw, bytes):
            return None
        descr = dtype.args[0] if dtype.args else None
        if not isinstance(descr, str) or not re.fullmatch(r"[biufc]\d{1,2}|b1|\?", descr):
            return None
        import numpy as np

        order = dtype.state[1] if isinstance(dtype.state, tuple) and len(dtype.state) > 1 else "<"
        order = order if order in ("<", ">", "|", "=") else "<"
        plain = np.dtype(order + descr if descr[0] != "?" else descr)
        if plain.itemsize != len(raw):
            return None
        return np.frombuffer(raw, dtype=plain)[0].item()


@dataclass(eq=False)
class StorageRef:
    """A storage the pickle describes, not yet read: key, dtype and claimed element count.

    ``base`` is set for the legacy format's storage views: this storage is then
    ``numel`` elements of ``base`` from ``base_offset`` on.
    """

    key: str
    dtype: torch.dtype
    numel: int
    base: StorageRef | None = None
    base_offset: int = 0

    @property
    def nbytes(self) -> int:
        """Claimed size in bytes."""
        return self.numel * self.dtype.itemsize

    @property
    def root(self) -> StorageRef:
        """The storage whose bytes are in the file."""
        return self.base if self.base is not None else self


@dataclass(eq=False)
class TensorRef:
    """A tensor the pickle describes, not yet read: a strided view of a storage.

    Offsets, sizes and strides count elements of ``dtype``; they are checked when the
    record is made (non-negative integers, the view inside the storage).
    """

    storage: StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: torch.dtype
    parameter: bool = False

    @property
    def shape(self) -> tuple[int, ...]:
        """The tensor's shape."""
        return self.size

    @property
    def numel(self) -> int:
        """Number of elements of the view."""
        return math.prod(self.size)

    @property
    def nbytes(self) -> int:
        """Bytes the view has once materialised."""
        return self.numel * self.dtype.itemsize


def _as_index(value: Any, what: str) -> int:
    if type(value) is not int or value < 0:
        raise ModelError(f"{what} is {one_line(repr(value), 40)}, not a non-negative integer")
    return value


def _make_tensor_ref(
    storage: Any, offset: Any, size: Any, stride: Any, dtype: torch.dtype | None = None
) -> TensorRef:
    if not isinstance(storage, StorageRef):
        raise ModelError(f"tensor record whose storage is a {type(storage).__name__}")
    offset = _as_index(offset, "a tensor's storage offset")
    if not isinstance(size, tuple | list) or not isinstance(stride, tuple | list):
        raise ModelError("tensor record whose size or stride is not a tuple")
    if len(size) != len(stride) or len(size) > MAX_DIMS:
        raise ModelError(f"tensor record with {len(size)} sizes and {len(stride)} strides")
    size = tuple(_as_index(s, "a tensor's size") for s in size)
    stride = tuple(_as_index(s, "a tensor's stride") for s in stride)
    dtype = storage.dtype if dtype is None else dtype
    storage_bytes = storage.nbytes
    if math.prod(size) == 0:
        end = offset * dtype.itemsize
    else:
        last = offset + sum((n - 1) * step for n, step in zip(size, stride, strict=True))
        end = (last + 1) * dtype.itemsize
    if end > storage_bytes:
        raise ModelError(
            f"tensor {tuple(size)} at offset {offset} with strides {tuple(stride)} reaches "
            f"byte {end} of storage {storage.key}, which holds {storage_bytes} bytes"
        )
    return TensorRef(storage, offset, size, stride, dtype)


class _Marker:
    """A class the pickle may name only as an argument (``torch.Tensor``, ``numpy.ndarray``)."""

    def __init__(self, name: str) -> None:
        self.name = name


class _StorageType:
    """Stand-in for ``torch.FloatStorage`` and friends."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


_TENSOR_TYPES = {("torch", "Tensor"), ("torch.nn.parameter", "Parameter")}


# --------------------------------------------------------------------------------------------
# The unpickler


class _Budget:
    def __init__(self, source: str) -> None:
        self.source = source
        self.operations = 0  # opcodes run (counted by the unpickler's loop)
        self.work = 0  # container elements copied
        self.tensors = 0

    def spend(self, units: int) -> None:
        self.work += units
        if self.work > MAX_PICKLE_WORK:
            self.refuse()

    def refuse(self) -> NoReturn:
        raise ModelError(
            f"the checkpoint's pickle is too large (more than {MAX_PICKLE_WORK:,} operations)"
        )


_LIST_TYPES = (list,)
_DICT_TYPES = (dict, OrderedDict)


class _SafeUnpickler(pickle._Unpickler):  # type: ignore[name-defined,misc]
    """A pure-Python unpickler: counted operations, inert stand-ins, no calls of our caller's.

    The pure-Python unpickler keeps its memo in a dict (the C one sizes an array from the
    index a pickle claims) and lets every operation be checked.
    """

    dispatch = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]

    def __init__(
        self, file: BinaryIO, budget: _Budget, storages: dict[str, StorageRef] | None = None
    ) -> None:
        super().__init__(file, encoding="latin1")
        self.budget = budget
        self.storages: dict[str, StorageRef] = {} if storages is None else storages
        self.callables: dict[tuple[str, str], Callable[..., Any]] = {
            ("torch._utils", "_rebuild_tensor"): self._rebuild_tensor,
            ("torch._utils", "_rebuild_tensor_v2"): self._rebuild_tensor,
            ("torch._utils", "_rebuild_tensor_v3"): self._rebuild_tensor_v3,
            ("torch._utils", "_rebuild_parameter"): self._rebuild_parameter,
            ("torch._utils", "_rebuild_parameter_with_state"): self._rebuild_parameter,
            ("torch._tensor", "_rebuild_from_type_v2"): self._rebuild_from_type,
            ("torch.nn.backends.thnn", "_get_thnn_function_backend"): _no_backend,
            ("collections", "OrderedDict"): self._ordered_dict,
            ("builtins", "set"): self._set,
            ("__builtin__", "set"): self._set,
            ("builtins", "frozenset"): self._frozenset,
            ("__builtin__", "frozenset"): self._frozenset,
            ("_codecs", "encode"): _latin1_encode,
            ("torch", "Size"): self._tuple,
            ("torch", "device"): _device,
            ("numpy", "dtype"): _numpy_dtype,
        }

    # -- the main loop, counting every operation ---------------------------------------------
    def load(self) -> Any:
        self._unframer = pickle._Unframer(self._file_read, self._file_readline)  # type: ignore[attr-defined]
        self.read = self._unframer.read
        self.readinto = self._unframer.readinto
        self.readline = self._unframer.readline
        self.metastack: list[Any] = []
        self.stack: list[Any] = []
        self.append = self.stack.append
        self.proto = 0
        read, dispatch, budget = self.read, self.dispatch, self.budget
        operations = budget.operations
        try:
            while True:
                key = read(1)
                if not key:
                    raise EOFError("pickle ends before its STOP")
                operations += 1
                if operations > MAX_PICKLE_WORK:
                    budget.refuse()
                dispatch[key[0]](self)
        except pickle._Stop as stop:  # type: ignore[attr-defined]
            return stop.value
        finally:
            budget.operations = operations

    # -- names -------------------------------------------------------------------------------
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.callables:
            return self.callables[(module, name)]
        if module in ("torch", "torch.cuda") and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "torch" and name in _DTYPES:
            return _DTYPES[name]
        if (module, name) in _TENSOR_TYPES:
            return _Marker(f"{module}.{name}")
        if module in _NUMPY_MODULES and name == "scalar":
            return _numpy_scalar
        if module in _NUMPY_MODULES and name == "_reconstruct":
            return _numpy_reconstruct
        if module == "numpy" and name == "ndarray":
            return _Marker("numpy.ndarray")
        if _MODULE_NAME.match(module) and _CLASS_NAME.match(name):
            return _record_class(module, name)  # an inert record, never called
        raise ModelError(
            f"refused to load: the checkpoint refers to {one_line(module, 80)}."
            f"{one_line(name, 80)}, which is neither a tensor, a container nor a class"
        )

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid:
            raise ModelError(f"unknown persistent object {one_line(repr(pid), 60)}")
        kind = pid[0].decode("latin1") if isinstance(pid[0], bytes) else pid[0]
        if kind == "module" and len(pid) >= 2:  # (class, file name, source text): the class
            if isinstance(pid[1], type) and issubclass(pid[1], ModuleRecord):
                return pid[1]
            raise ModelError("module entry that is not a module class")
        if kind != "storage" or len(pid) not in (5, 6):
            raise ModelError(f"unknown persistent object {one_line(repr(kind), 60)}")
        storage_type, key, numel = pid[1], pid[2], pid[4]
        if not isinstance(storage_type, _StorageType):
            raise ModelError(f"unknown storage type {one_line(repr(storage_type), 60)}")
        if not isinstance(key, str | int) or isinstance(key, bool) or len(str(key)) > 200:
            raise ModelError(f"storage key {one_line(repr(key), 60)} is not a name")
        storage = self._storage(str(key), storage_type.dtype, _as_index(numel, "a storage size"))
        view = pid[5] if len(pid) == 6 else None
        if view is None:
            return storage
        if not isinstance(view, tuple) or len(view) != 3:
            raise ModelError("storage view with unexpected metadata")
        view_key = str(view[0])
        offset = _as_index(view[1], "a storage view's offset")
        size = _as_index(view[2], "a storage view's size")
        if offset + size > storage.numel:
            raise ModelError(f"storage view {view_key} reaches past storage {storage.key}")
        known = self.storages.get(view_key)
        if known is None:
            known = StorageRef(view_key, storage.dtype, size, storage, offset)
            self.storages[view_key] = known
        elif (known.base, known.base_offset, known.numel) != (storage, offset, size):
            raise ModelError(f"storage view {view_key} is described twice differently")
        return known

    def _storage(self, key: str, dtype: torch.dtype, numel: int) -> StorageRef:
        known = self.storages.get(key)
        if known is None:
            known = StorageRef(key, dtype, numel)
            self.storages[key] = known
        elif (known.dtype, known.numel) != (dtype, numel) or known.base is not None:
            raise ModelError(f"storage {key} is described twice differently")
        return known

    # -- the callables a pickle may name -----------------------------------------------------
    def _rebuild_tensor(
        self, storage: Any, offset: Any, size: Any, stride: Any, *_: Any
    ) -> TensorRef:
        self.budget.tensors += 1
        if self.budget.tensors > MAX_TENSORS:
            raise ModelError(f"the checkpoint describes more than {MAX_TENSORS:,} tensors")
        return _make_tensor_ref(storage, offset, size, stride)

    def _rebuild_tensor_v3(
        self,
        storage: Any,
        offset: Any,
        size: Any,
        stride: Any,
        requires_grad: Any = False,
        hooks: Any = None,
        dtype: Any = None,
        *_: Any,
    ) -> TensorRef:
        if not isinstance(dtype, torch.dtype):
            raise ModelError("tensor record without a dtype")
        self.budget.tensors += 1
        if self.budget.tensors > MAX_TENSORS:
            raise ModelError(f"the checkpoint describes more than {MAX_TENSORS:,} tensors")
        return _make_tensor_ref(storage, offset, size, stride, dtype)

    def _rebuild_parameter(self, data: Any, *_: Any) -> TensorRef:
        if not isinstance(data, TensorRef):
            raise ModelError(f"parameter record holding a {type(data).__name__}")
        data.parameter = True
        return data

    def _rebuild_from_type(self, func: Any, new_type: Any, args: Any, state: Any) -> TensorRef:
        rebuilders = (self._rebuild_tensor, self._rebuild_tensor_v3, self._rebuild_parameter)
        if func not in rebuilders or not isinstance(new_type, _Marker):
            raise ModelError("tensor record of an unsupported kind")
        if not isinstance(args, tuple):
            raise ModelError("tensor record with unexpected arguments")
        return func(*args)

    def _ordered_dict(self, items: Iterable[Any] = ()) -> OrderedDict[Any, Any]:
        items = list(_bounded(items, self.budget))
        return OrderedDict(items)

    def _set(self, items: Iterable[Any] = ()) -> set[Any]:
        return set(_bounded(items, self.budget))

    def _frozenset(self, items: Iterable[Any] = ()) -> frozenset[Any]:
        return frozenset(_bounded(items, self.budget))

    def _tuple(self, items: Iterable[Any] = ()) -> tuple[Any, ...]:
        return tuple(_bounded(items, self.budget))

    # -- operations that touch objects: only plain containers and our records ---------------
    def load_build(self) -> None:
        state = self.stack.pop()
        target = self.stack[-1]
        if isinstance(target, ModuleRecord | MetadataRecord):
            self.budget.spend(target._build(state))
        elif isinstance(target, OrderedDict | dict):  # an OrderedDict's _metadata: ignored
            self.budget.spend(1)
        else:
            raise ModelError(f"pickled state for a {type(target).__name__}")

    dispatch[pickle.BUILD[0]] = load_build

    def load_append(self) -> None:
        value = self.stack.pop()
        target = self.stack[-1]
        if type(target) is not list:
            raise ModelError(f"append to a {type(target).__name__}")
        target.append(value)

    dispatch[pickle.APPEND[0]] = load_append

    def load_appends(self) -> None:
        items = self.pop_mark()
        target = self.stack[-1]
        if type(target) is not list:
            raise ModelError(f"append to a {type(target).__name__}")
        self.budget.spend(len(items))
        target.extend(items)

    dispatch[pickle.APPENDS[0]] = load_appends

    def load_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        target = self.stack[-1]
        if type(target) not in _DICT_TYPES:
            raise ModelError(f"item assignment to a {type(target).__name__}")
        target[key] = value

    dispatch[pickle.SETITEM[0]] = load_setitem

    def load_setitems(self) -> None:
        items = self.pop_mark()
        target = self.stack[-1]
        if type(target) not in _DICT_TYPES or len(items) % 2:
            raise ModelError(f"item assignment to a {type(target).__name__}")
        self.budget.spend(len(items))
        for index in range(0, len(items), 2):
            target[items[index]] = items[index + 1]

    dispatch[pickle.SETITEMS[0]] = load_setitems

    def load_additems(self) -> None:
        items = self.pop_mark()
        target = self.stack[-1]
        if type(target) is not set:
            raise ModelError(f"adding items to a {type(target).__name__}")
        self.budget.spend(len(items))
        target.update(items)

    dispatch[pickle.ADDITEMS[0]] = load_additems

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._new(cls, args))

    dispatch[pickle.NEWOBJ[0]] = load_newobj

    def load_newobj_ex(self) -> None:
        self.stack.pop()  # keyword arguments: ignored, as every argument
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._new(cls, args))

    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex

    def _new(self, cls: Any, args: Any) -> Any:
        if isinstance(cls, type) and issubclass(cls, ModuleRecord):
            return cls()
        if cls is OrderedDict or cls is dict:
            return cls()
        raise ModelError(f"refused to create an object of {one_line(repr(cls), 60)}")

    def load_reduce(self) -> None:
        args = self.stack.pop()
        func = self.stack[-1]
        if not isinstance(args, tuple):
            raise ModelError("call with arguments that are not a tuple")
        if isinstance(func, type) and issubclass(func, ModuleRecord):
            raise ModelError(
                f"refused to load: the checkpoint calls {func.module_path}.{func.class_name}"
            )
        if not callable(func) or isinstance(func, _Marker | _StorageType | torch.dtype):
            raise ModelError(f"refused to call {one_line(repr(func), 60)}")
        self.stack[-1] = func(*args)

    dispatch[pickle.REDUCE[0]] = load_reduce

    def _refuse(self) -> None:
        raise ModelError("the pickle uses an operation no checkpoint needs")

    for _code in (
        pickle.INST,
        pickle.OBJ,
        pickle.EXT1,
        pickle.EXT2,
        pickle.EXT4,
        pickle.PERSID,
        pickle.BYTEARRAY8,
        pickle.NEXT_BUFFER,
        pickle.READONLY_BUFFER,
    ):
        dispatch[_code[0]] = _refuse
    del _code


def _bounded(items: Iterable[Any], budget: _Budget) -> Iterator[Any]:
    if not isinstance(items, list | tuple | set | frozenset | dict):
        raise ModelError(f"container built from a {type(items).__name__}")
    budget.spend(len(items))
    return iter(items)


def _no_backend(*_: Any) -> None:
    return None


def _latin1_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise ModelError("bytes encoded in a way no checkpoint uses")
    return text.encode("latin1")


def _device(*args: Any) -> str:
    return "device(" + ", ".join(one_line(repr(a), 20) for a in args[:2]) + ")"


def _numpy_dtype(descr: Any, *_: Any) -> MetadataRecord:
    if not isinstance(descr, str) or len(descr) > 64:
        raise ModelError("numpy dtype that is not a short type code")
    return MetadataRecord("numpy.dtype", descr)


def _numpy_scalar(dtype: Any, raw: Any = None) -> MetadataRecord:
    if not isinstance(dtype, MetadataRecord) or not isinstance(raw, bytes | type(None)):
        raise ModelError("numpy scalar that is not a dtype and bytes")
    return MetadataRecord("numpy.scalar", dtype, raw)


def _numpy_reconstruct(cls: Any, *_: Any) -> MetadataRecord:
    if not isinstance(cls, _Marker) or cls.name != "numpy.ndarray":
        raise ModelError("numpy array of an unsupported class")
    return MetadataRecord("numpy.ndarray")


# --------------------------------------------------------------------------------------------
# Reading the two formats


class _CappedReader:
    """A file's ``read``/``readline`` that refuse to go past ``cap`` bytes in total."""

    def __init__(self, handle: BinaryIO, cap: int) -> None:
        self.handle = handle
        self.left = cap

    def _take(self, data: bytes) -> bytes:
        self.left -= len(data)
        return data

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0 and size != 0:
            raise ModelError(f"the checkpoint's pickles are larger than {MAX_PICKLE_BYTES:,} bytes")
        size = self.left if size is None or size < 0 else min(size, self.left)
        return self._take(self.handle.read(size))

    def readline(self, size: int = -1) -> bytes:
        if self.left <= 0:
            raise ModelError(f"the checkpoint's pickles are larger than {MAX_PICKLE_BYTES:,} bytes")
        return self._take(self.handle.readline(self.left))


class Checkpoint:
    """A pickled checkpoint whose pickle has been read and whose storages have not.

    ``root`` is the unpickled object, with :class:`TensorRef`, :class:`ModuleRecord` and
    :class:`MetadataRecord` stand-ins. :meth:`read_tensors` reads chosen tensors.
    """

    def __init__(
        self,
        path: Path,
        root: Any,
        storages: dict[str, StorageRef],
        zip_prefix: str | None = None,
        legacy_keys: list[str] | None = None,
        legacy_data_start: int = 0,
    ) -> None:
        self.path = path
        self.source = str(path)
        self.root = root
        self.storages = storages
        self.zip_prefix = zip_prefix
        self.legacy_keys = legacy_keys or []
        self.legacy_data_start = legacy_data_start

    def read_tensors(
        self, refs: Mapping[str, TensorRef], max_bytes: int, why: str = ""
    ) -> OrderedDict[str, torch.Tensor]:
        """Read the storages of ``refs`` and return their tensors under the same names.

        Raises :class:`ModelError` before reading anything if the storages they need hold
        more than ``max_bytes`` bytes (``why`` says where the budget comes from). The
        tensors are views of the storages read, as the file describes them.
        """
        roots: dict[int, StorageRef] = {}
        for ref in refs.values():
            roots.setdefault(id(ref.storage.root), ref.storage.root)
        needed = sum(root.nbytes for root in roots.values())
        if needed > max_bytes:
            raise ModelError(
                f"{self.source}: its tensors' storages hold {needed:,} bytes, more than the "
                f"{max_bytes:,} allowed{why}"
            )
        data = self._read_roots(list(roots.values()))
        tensors: OrderedDict[str, torch.Tensor] = OrderedDict()
        for name, ref in refs.items():
            storage = ref.storage
            buffer = memoryview(data[id(storage.root)])
            start = storage.base_offset * storage.dtype.itemsize if storage.base else 0
            view = buffer[start : start + storage.nbytes]
            count = len(view) // ref.dtype.itemsize
            flat = (
                torch.frombuffer(view, dtype=ref.dtype, count=count)
                if count
                else torch.empty(0, dtype=ref.dtype)
            )
            tensors[name] = flat.as_strided(ref.size, ref.stride, ref.offset)
        return tensors

    def _read_roots(self, roots: list[StorageRef]) -> dict[int, bytearray]:
        if self.zip_prefix is not None:
            return self._read_zip(roots)
        return self._read_legacy(roots)

    def _read_zip(self, roots: list[StorageRef]) -> dict[int, bytearray]:
        out: dict[int, bytearray] = {}
        with zipfile.ZipFile(self.path) as archive:
            for root in roots:
                name = f"{self.zip_prefix}data/{root.key}"
                try:
                    info = archive.getinfo(name)
                except KeyError:
                    raise ModelError(f"{self.source}: storage {root.key} is missing") from None
                if info.file_size != root.nbytes:
                    raise ModelError(
                        f"{self.source}: storage {root.key} holds {info.file_size:,} bytes, "
                        f"its record says {root.nbytes:,}"
                    )
                with archive.open(info) as handle:
                    out[id(root)] = _read_exactly(handle, root.nbytes, self.source, root.key)
        return out

    def _read_legacy(self, roots: list[StorageRef]) -> dict[int, bytearray]:
        wanted = {root.key: root for root in roots}
        out: dict[int, bytearray] = {}
        size = self.path.stat().st_size
        with self.path.open("rb") as handle:
            position = self.legacy_data_start
            for key in self.legacy_keys:
                storage = self.storages.get(key)
                if storage is None or storage.base is not None:
                    raise ModelError(f"{self.source}: storage {key} is listed but not described")
                handle.seek(position)
                header = handle.read(8)
                if len(header) < 8:
                    raise ModelError(f"{self.source}: checkpoint is truncated (storage {key})")
                (numel,) = struct.unpack("<q", header)
                if numel != storage.numel:
                    raise ModelError(
                        f"{self.source}: storage {key} holds {numel:,} elements, "
                        f"its record says {storage.numel:,}"
                    )
                if key in wanted:
                    root = wanted.pop(key)
                    out[id(root)] = _read_exactly(handle, root.nbytes, self.source, key)
                    if not wanted:
                        break
                position += 8 + storage.nbytes
                if position > size:
                    raise ModelError(f"{self.source}: checkpoint is truncated (storage {key})")
        if wanted:
            missing = next(iter(wanted))
            raise ModelError(f"{self.source}: storage {missing} is missing")
        return out


def _read_exactly(handle: BinaryIO, size: int, source: str, key: str) -> bytearray:
    buffer = bytearray(size)
    view = memoryview(buffer)
    done = 0
    while done < size:
        chunk = handle.read(min(_CHUNK, size - done))
        if not chunk:
            raise ModelError(f"{source}: checkpoint is truncated (storage {key} incomplete)")
        view[done : done + len(chunk)] = chunk
        done += len(chunk)
    return buffer


def _read_zip_checkpoint(path: Path) -> Checkpoint:
    with path.open("rb") as handle:
        end = zipfile._EndRecData(handle)  # type: ignore[attr-defined]
    if not end:
        raise ModelError(f"{path}: not a readable zip checkpoint")
    entries = end[zipfile._ECD_ENTRIES_TOTAL]  # type: ignore[attr-defined]
    directory = end[zipfile._ECD_SIZE]  # type: ignore[attr-defined]
    if entries > MAX_ZIP_ENTRIES or directory > MAX_ZIP_DIRECTORY:
        raise ModelError(f"{path}: zip checkpoint with {entries:,} entries is too large")
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickle_name = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pickle_name is None:
            raise ModelError(f"{path}: zip checkpoint has no data.pkl (TorchScript archive?)")
        prefix = pickle_name[: -len("data.pkl")]
        order = f"{prefix}byteorder"
        if order in names:
            with archive.open(order) as handle:
                if handle.read(16).strip() not in (b"little", b""):
                    raise ModelError(f"{path}: big-endian checkpoints are not supported")
        info = archive.getinfo(pickle_name)
        if info.file_size > MAX_PICKLE_BYTES:
            raise ModelError(f"{path}: data.pkl is larger than {MAX_PICKLE_BYTES:,} bytes")
        with archive.open(info) as handle:
            raw = handle.read(MAX_PICKLE_BYTES + 1)
        if len(raw) > MAX_PICKLE_BYTES:
            raise ModelError(f"{path}: data.pkl is larger than {MAX_PICKLE_BYTES:,} bytes")
    budget = _Budget(str(path))
    unpickler = _SafeUnpickler(io.BytesIO(raw), budget)
    root = unpickler.load()
    return Checkpoint(path, root, unpickler.storages, zip_prefix=prefix)


def _read_legacy_checkpoint(path: Path) -> Checkpoint:
    budget = _Budget(str(path))
    with path.open("rb") as handle:
        reader = _CappedReader(handle, MAX_PICKLE_BYTES)
        if _SafeUnpickler(reader, budget).load() != LEGACY_MAGIC:  # type: ignore[arg-type]
            raise ModelError(f"{path}: not a PyTorch checkpoint (bad magic number)")
        _SafeUnpickler(reader, budget).load()  # type: ignore[arg-type]  # protocol version
        info = _SafeUnpickler(reader, budget).load()  # type: ignore[arg-type]  # sys info
        if isinstance(info, dict) and info.get("little_endian") is False:
            raise ModelError(f"{path}: big-endian checkpoints are not supported")
        unpickler = _SafeUnpickler(reader, budget)  # type: ignore[arg-type]
        root = unpickler.load()
        keys = _SafeUnpickler(reader, budget).load()  # type: ignore[arg-type]
        if not isinstance(keys, list) or not all(isinstance(k, str | int) for k in keys):
            raise ModelError(f"{path}: the list of storages is not a list of names")
        if len(keys) > len(unpickler.storages):
            raise ModelError(f"{path}: storages are listed that no tensor describes")
        start = handle.tell()
    return Checkpoint(path, root, unpickler.storages, None, [str(k) for k in keys], start)


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read a pickled checkpoint's structure (no storage bytes), without executing code.

    Raises
    ------
    ModelError
        If the file is missing, truncated, not a checkpoint, too large for the limits of
        this module, or refers to anything other than tensors, containers, classes and
        NumPy metadata.
    """
    source = Path(path)
    if not source.is_file():
        raise ModelError(f"{source}: checkpoint not found")
    try:
        with source.open("rb") as handle:
            magic = handle.read(4)
        if magic == b"PK\x03\x04":
            return _read_zip_checkpoint(source)
        return _read_legacy_checkpoint(source)
    except ModelError as error:
        raise _with_source(error, source) from None
    except Exception as error:  # noqa: BLE001 - a hostile file may raise anything
        raise ModelError(
            f"{source}: not a readable PyTorch checkpoint ({type(error).__name__}: "
            f"{one_line(error, 160)})"
        ) from None


def _with_source(error: ModelError, source: Path) -> ModelError:
    message = str(error)
    if message.startswith(f"{source}: "):
        return error
    return ModelError(f"{source}: {message}")


# --------------------------------------------------------------------------------------------
# Walking the unpickled tree


def _children(obj: Any, source: str, path: tuple[str, ...]) -> list[tuple[str, Any]]:
    """The named children a walk descends into (a module record's as ``state_dict`` names)."""
    if isinstance(obj, dict):
        return [(str(k), v) for k, v in obj.items() if isinstance(k, str | int)]
    if isinstance(obj, list | tuple):
        return [(str(i), v) for i, v in enumerate(obj)]
    if isinstance(obj, ModuleRecord) and obj.is_module:
        where = ".".join(path) or "the root"
        named: list[tuple[str, Any]] = []
        skip = obj.attributes.get("_non_persistent_buffers_set") or ()
        if not isinstance(skip, set | frozenset | list | tuple):
            raise ModelError(f"{source}: module record at {where} has malformed fields")
        for group in ("_parameters", "_buffers", "_modules"):
            members = obj.attributes.get(group)
            if members is None:
                continue
            if not isinstance(members, dict):
                raise ModelError(
                    f"{source}: module record at {where} has {group} of type "
                    f"{type(members).__name__}"
                )
            for key, value in members.items():
                if not isinstance(key, str):
                    raise ModelError(f"{source}: module record at {where} has a non-text name")
                if value is None or (group == "_buffers" and key in skip):
                    continue
                expected = ModuleRecord if group == "_modules" else TensorRef
                if not isinstance(value, expected):
                    raise ModelError(
                        f"{source}: module record at {where} holds a "
                        f"{type(value).__name__} in {group}"
                    )
                named.append((key, value))
        return named
    return []


def _is_container(obj: Any) -> bool:
    return isinstance(obj, dict | list | tuple) or (isinstance(obj, ModuleRecord) and obj.is_module)


def tensor_entries(root: Any, source: str) -> list[tuple[tuple[str, ...], TensorRef]]:
    """Every tensor reachable from ``root``, with its path of keys (iterative, bounded).

    Dicts, lists and tuples are descended by key or index, module records by their
    parameters, persistent buffers and sub-modules (so a path joined with dots is a
    ``state_dict`` name). Cycles, nesting deeper than :data:`MAX_DEPTH` and more than
    :data:`MAX_VISITS` visits are refused.
    """
    entries: list[tuple[tuple[str, ...], TensorRef]] = []
    if isinstance(root, TensorRef):
        return [((), root)]
    if not _is_container(root):
        return entries
    ancestors = {id(root)}
    frames: list[tuple[Any, Iterator[tuple[str, Any]], tuple[str, ...]]] = [
        (root, iter(_children(root, source, ())), ())
    ]
    visits = 0
    while frames:
        obj, children, path = frames[-1]
        for key, child in children:
            if isinstance(child, TensorRef):
                entries.append(((*path, key), child))
                if len(entries) > MAX_TENSORS:
                    raise ModelError(f"{source}: more than {MAX_TENSORS:,} tensor entries")
                continue
            if not _is_container(child):
                continue
            where = ".".join((*path, key))
            if id(child) in ancestors:
                raise ModelError(f"{source}: the checkpoint's records form a cycle at {where}")
            if len(frames) >= MAX_DEPTH:
                raise ModelError(f"{source}: records nested deeper than {MAX_DEPTH} levels")
            visits += 1
            if visits > MAX_VISITS:
                raise ModelError(f"{source}: more than {MAX_VISITS:,} nested records")
            ancestors.add(id(child))
            child_path = (*path, key)
            frames.append((child, iter(_children(child, source, child_path)), child_path))
            break
        else:
            frames.pop()
            ancestors.discard(id(obj))
    return entries


# --------------------------------------------------------------------------------------------
# The original API: materialised trees


def _materialize(root: Any, tensors: Mapping[int, torch.Tensor], source: str) -> Any:
    """A copy of ``root`` with every :class:`TensorRef` replaced by its tensor (iterative)."""
    done: dict[int, Any] = {}
    active: set[int] = set()
    keep: list[Any] = []  # keeps replaced objects alive, so that ids stay unique

    def parts(obj: Any) -> list[Any] | None:
        if isinstance(obj, dict):
            return list(obj.values())
        if isinstance(obj, list | tuple):
            return list(obj)
        if isinstance(obj, ModuleRecord):
            return list(obj.attributes.values())
        return None

    stack: list[tuple[Any, bool]] = [(root, False)]
    visits = 0
    while stack:
        obj, expanded = stack.pop()
        key = id(obj)
        if key in done and not expanded:
            continue
        kids = parts(obj)
        if kids is None:
            done[key] = tensors.get(key, obj) if isinstance(obj, TensorRef) else obj
            continue
        if not expanded:
            if key in active:
                raise ModelError(f"{source}: the checkpoint's records form a cycle")
            visits += 1
            if visits > MAX_VISITS or len(active) >= MAX_DEPTH:
                raise ModelError(f"{source}: records nested too deeply or too many")
            active.add(key)
            stack.append((obj, True))
            stack.extend((kid, False) for kid in kids if id(kid) not in done)
            continue
        active.discard(key)
        values = [done[id(kid)] for kid in kids]
        if isinstance(obj, dict):
            new: Any = type(obj)() if type(obj) in _DICT_TYPES else {}
            new.update(zip(obj.keys(), values, strict=True))
        elif isinstance(obj, list):
            new = values
        elif isinstance(obj, tuple):
            new = tuple(values)
        else:
            obj.attributes = dict(zip(obj.attributes.keys(), values, strict=True))
            new = obj
        keep.append(obj)
        done[key] = new
    return done[id(root)]


def safe_load(path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """Load a pickled checkpoint without executing code from it, within ``max_bytes``.

    Returns the pickled object with tensors rebuilt, ``nn.Module`` objects replaced by
    :class:`ModuleRecord` and containers as plain Python containers. Both the storages
    read and the tensors they make (a stride-0 view can be far larger than its storage)
    must fit in ``max_bytes``.

    Raises
    ------
    ModelError
        If the file is missing, truncated, not a checkpoint, larger than the budget, or
        refers to anything other than tensors, containers, classes and NumPy metadata.
    """
    checkpoint = read_checkpoint(path)
    source = checkpoint.source
    try:
        entries = tensor_entries(checkpoint.root, source)
        refs = {id(ref): ref for _, ref in entries}
        viewed = sum(ref.nbytes for ref in refs.values())
        if viewed > max_bytes:
            raise ModelError(
                f"{source}: its tensors hold {viewed:,} bytes, more than the {max_bytes:,} allowed"
            )
        named = {str(key): ref for key, ref in refs.items()}
        read = checkpoint.read_tensors(named, max_bytes)
        tensors = {key: read[str(key)] for key in refs}
        return _materialize(checkpoint.root, tensors, source)
    except ModelError:
        raise
    except Exception as error:  # noqa: BLE001
        raise ModelError(
            f"{source}: not a readable PyTorch checkpoint ({type(error).__name__}: "
            f"{one_line(error, 160)})"
        ) from None


def records_to_state_dict(obj: Any, prefix: str = "") -> OrderedDict[str, torch.Tensor]:
    """Flatten a materialised :class:`ModuleRecord` tree (or a state-dict) into a state-dict.

    Parameters and buffers are collected under their dotted names, as ``nn.Module`` would
    name them (iteratively, with the limits of :func:`tensor_entries`). Tensors are
    returned as they are, not copied.
    """
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    if isinstance(obj, dict):
        for key, value in obj.items():
            if isinstance(value, torch.Tensor):
                state[prefix + str(key)] = value.detach()
        return state
    if not isinstance(obj, ModuleRecord):
        raise ModelError(f"expected a module or a state-dict, found {type(obj).__name__}")
    pending: list[tuple[ModuleRecord, str, int]] = [(obj, prefix, 0)]
    seen: set[int] = set()
    while pending:  # depth first, children in order: the order of ``state_dict()``
        record, at, depth = pending.pop()
        if id(record) in seen or depth > MAX_DEPTH:
            raise ModelError(f"module records nested too deeply or in a cycle at {at!r}")
        seen.add(id(record))
        skip = record.attributes.get("_non_persistent_buffers_set") or ()
        for group in ("_parameters", "_buffers"):
            for key, value in (record.attributes.get(group) or {}).items():
                if isinstance(value, torch.Tensor) and not (group == "_buffers" and key in skip):
                    state[at + key] = value.detach()
        children = [
            (key, child)
            for key, child in (record.attributes.get("_modules") or {}).items()
            if isinstance(child, ModuleRecord)
        ]
        pending.extend((child, f"{at}{key}.", depth + 1) for key, child in reversed(children))
    return state
