"""Reading and writing network weights in every form users have, within a budget.

* FuseVis's own files: safetensors with JSON metadata under the header key ``fusevis``.
* State-dict pickles (``.pth``/``.pt``), in PyTorch's zip or legacy format, as repositories
  ship them: nested in a dict (``{"state_dict": ...}``, ``{"model": ...}``, found
  automatically or chosen with ``FILE#key``), beside NumPy scalars and other metadata,
  without ``num_batches_tracked`` buffers, with a prefix such as ``module.``.
* Whole pickled modules saved the original FuseVis way (``torch.save(model)``).
* Several files for several parts of a model: ``encoder=enc.pth,decoder=dec.pth``.

Pickles are read by :mod:`fusevis.models.safe_pickle`, which executes no code from the file
and reads no storage byte before the tensors' names, shapes, dtypes, strides and offsets
have been checked against the model; the storages read may then hold at most
:data:`BUDGET_FACTOR` times the model's own parameter and buffer bytes (plus
:data:`BUDGET_SLACK`). Every problem is a :class:`~fusevis.errors.ModelError` with one line
naming the file.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fusevis.errors import FuseVisError, ModelError
from fusevis.models.safe_pickle import (
    DEFAULT_MAX_BYTES,
    Checkpoint,
    TensorRef,
    one_line,
    read_checkpoint,
    tensor_entries,
)

METADATA_KEY = "fusevis"
#: The storages read for a model may hold this many times the model's own bytes...
BUDGET_FACTOR = 4
#: ... plus this many bytes.
BUDGET_SLACK = 1 << 20
#: Largest safetensors header (JSON) read, in bytes.
MAX_SAFETENSORS_HEADER = 16 << 20
#: Keys under which repositories nest their state dicts; preferred when several fit.
PREFERRED_KEYS = (
    "state_dict",
    "model_state_dict",
    "model",
    "net",
    "network",
    "weight",
    "weights",
    "params",
    "generator",
    "module",
    "state",
)
#: Bound on the work of matching a file's nested tensors with a model's (see _candidates).
MAX_MATCH_WORK = 4_000_000
#: Most prefixes tried on either side when matching names.
MAX_PREFIXES = 8
_BATCHES = "num_batches_tracked"
_PART = re.compile(r"([A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*)=(.+)\Z", re.DOTALL)

_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def tensor_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the tensors' names, dtypes, shapes and bytes, in sorted name order."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_weights(
    model: nn.Module | dict[str, torch.Tensor], path: str | Path, metadata: dict[str, Any]
) -> Path:
    """Write a model's state-dict as safetensors, with ``metadata`` and its tensor digest."""
    from safetensors.torch import save_file

    state = model.state_dict() if isinstance(model, nn.Module) else model
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    meta = {**metadata, "sha256": tensor_digest(state)}
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(target.suffix + ".tmp")
    save_file(state, str(temporary), metadata={METADATA_KEY: json.dumps(meta, sort_keys=True)})
    temporary.replace(target)
    return target


# --------------------------------------------------------------------------------------------
# Where the weights come from


@dataclass(frozen=True)
class WeightsSource:
    """One file of a weights specification: which part of the model, which file, which key."""

    part: str
    path: Path
    key: str | None = None

    @property
    def label(self) -> str:
        """``FILE`` or ``FILE#key``, as error messages name it."""
        return str(self.path) if self.key is None else f"{self.path}#{self.key}"


def _file_and_key(text: str) -> tuple[Path, str | None]:
    if Path(text).is_file() or "#" not in text:
        return Path(text), None
    file, _, key = text.rpartition("#")
    return Path(file), key or None


def parse_weights(weights: str | Path | Mapping[str, Any] | Sequence[Any]) -> list[WeightsSource]:
    """The files a weights specification names.

    ``weights`` is a path (``FILE`` or ``FILE#key``, ``key`` a dotted path of nested dict
    keys), a string ``part=FILE,part=FILE`` naming a file for each part (sub-module) of
    the model, a mapping ``{part: FILE}`` or a list of ``part=FILE`` strings.
    """
    if isinstance(weights, Mapping):
        items = [(str(part), str(file)) for part, file in weights.items()]
    elif isinstance(weights, list | tuple):
        if len(weights) == 1 and not _PART.match(str(weights[0])):
            return parse_weights(str(weights[0]))
        items = []
        for item in weights:
            match = _PART.match(str(item))
            if not match:
                raise ModelError(f"weights {one_line(item, 80)!r} should read part=FILE")
            items.append((match[1], match[2]))
    else:
        text = str(weights)
        pieces = text.split(",")
        matches = [_PART.match(piece.strip()) for piece in pieces]
        if Path(text).is_file() or not all(matches):
            return [WeightsSource("", *_file_and_key(text))]
        items = [(m[1], m[2]) for m in matches if m]
    if not items:
        raise ModelError("no weights files given")
    sources = [WeightsSource(part, *_file_and_key(file.strip())) for part, file in items]
    parts = [s.part for s in sources]
    for part in parts:
        inside = [p for p in parts if p == part or p.startswith(part + ".")]
        if len(inside) > 1:
            raise ModelError(f"weights given twice for part {part!r}: {', '.join(inside)}")
    return sources


# --------------------------------------------------------------------------------------------
# Matching a file's tensors with a model's


@dataclass(frozen=True)
class _Info:
    """Shape and dtype of a tensor not yet read (safetensors)."""

    shape: tuple[int, ...]
    dtype: torch.dtype | None
    dtype_name: str = ""


class _Model:
    """What matching needs of a model's state dict, computed once."""

    def __init__(self, expected: Mapping[str, torch.Tensor]) -> None:
        self.expected = expected
        self.required = {k for k in expected if k.rsplit(".", 1)[-1] != _BATCHES}
        self.prefixes = _common_prefixes(list(expected))[:MAX_PREFIXES]


@dataclass
class _Fit:
    model: _Model
    where: tuple[str, ...]
    names: dict[str, Any]  # the candidate's names -> TensorRef / _Info / tensor
    mapping: dict[str, str]  # model name -> file name (only those whose shape fits)
    used: set[str]  # file names that land on a model name
    targets: set[str]  # model names they land on
    wrong_shape: list[str]
    wrong_dtype: list[str]

    @property
    def problems(self) -> int:
        missing = len(self.model.required - self.targets)
        unexpected = len(self.names) - len(self.used)
        return missing + unexpected + len(self.wrong_shape) + len(self.wrong_dtype)

    @property
    def perfect(self) -> bool:
        return self.problems == 0

    @property
    def missing(self) -> list[str]:
        return [k for k in self.model.expected if k in self.model.required - self.targets]

    @property
    def unexpected(self) -> list[str]:
        return [n for n in self.names if n not in self.used]


def _castable(found: torch.dtype | None, wanted: torch.dtype) -> bool:
    if found is None:
        return False
    if wanted.is_complex or found.is_complex:
        return found.is_complex and wanted.is_complex
    return found.is_floating_point == wanted.is_floating_point


def _prefix_pairs(names: Sequence[str], adds: Sequence[str]) -> list[tuple[str, str]]:
    """(prefix to strip from the file's names, prefix to add) pairs worth trying."""
    strips = _common_prefixes(names)[:MAX_PREFIXES]
    return [(s, a) for s in strips for a in adds if not ((s or a) and s == a)]


def _common_prefixes(names: Sequence[str]) -> list[str]:
    """``""`` and every dotted prefix all ``names`` share (each leaving a non-empty rest)."""
    split = [name.split(".")[:-1] for name in names]
    common: list[str] = []
    if split:
        for parts in zip(*split, strict=False):
            if any(p != parts[0] for p in parts):
                break
            common.append(parts[0])
    return [""] + [".".join(common[: i + 1]) + "." for i in range(len(common))]


def _fit(model: _Model, where: tuple[str, ...], names: dict[str, Any]) -> _Fit:
    expected = model.expected
    best: _Fit | None = None
    listed = list(names)
    sample = listed[:: max(1, len(listed) // 16)][:16]
    for strip, add in _prefix_pairs(listed, model.prefixes):
        # a pair is scanned in full only if a sampled name lands on a model name through it
        if (strip or add) and not any(
            n.startswith(strip) and add + n[len(strip) :] in expected for n in sample
        ):
            continue
        fit = _Fit(model, where, names, {}, set(), set(), [], [])
        for name, info in names.items():
            if not name.startswith(strip):
                continue
            target = add + name[len(strip) :]
            if target not in expected:
                continue
            fit.used.add(name)
            fit.targets.add(target)
            wanted = expected[target]
            if tuple(info.shape) != tuple(wanted.shape):
                fit.wrong_shape.append(f"{target} {tuple(info.shape)} vs {tuple(wanted.shape)}")
            elif not _castable(info.dtype, wanted.dtype):
                found = getattr(info, "dtype_name", "") or str(info.dtype)
                fit.wrong_dtype.append(f"{target} {found} vs {wanted.dtype}")
            else:
                fit.mapping[target] = name
        if best is None or (len(fit.mapping), -fit.problems) > (
            len(best.mapping),
            -best.problems,
        ):
            best = fit
    assert best is not None
    return best


def _candidates(
    entries: list[tuple[tuple[str, ...], Any]], key: str | None, label: str
) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
    """Every container holding tensors, with its tensors named relative to it.

    A container whose tensors all lie in one child container is left out (the child,
    with a prefix, fits as well). The work, the sum over tensors of their depth squared,
    is bounded by :data:`MAX_MATCH_WORK`.
    """
    groups: dict[tuple[str, ...], dict[str, Any]] = {}
    branches: dict[tuple[str, ...], set[str]] = {}
    leaves: set[tuple[str, ...]] = set()
    work = 0
    for path, ref in entries:
        start = 0
        if key is not None:
            start = _key_length(path, key)
            if start < 0 or start == len(path):
                continue
        work += (len(path) - start) ** 2
        if work > MAX_MATCH_WORK:
            raise ModelError(
                f"{label}: too many nested tensors to match with the model; "
                "name the dict that holds the weights with FILE#key"
            )
        leaves.add(path[:-1])
        for depth in range(start, len(path)):
            groups.setdefault(path[:depth], {})[".".join(path[depth:])] = ref
            branches.setdefault(path[:depth], set()).add(path[depth])
    return [
        (where, names)
        for where, names in groups.items()
        if len(branches[where]) > 1 or where in leaves
    ]


def _key_length(path: tuple[str, ...], key: str) -> int:
    """How many components of ``path`` spell ``key`` joined with dots (-1 if none do)."""
    joined = ""
    for index, part in enumerate(path):
        joined = part if index == 0 else f"{joined}.{part}"
        if joined == key:
            return index + 1
        if not key.startswith(joined + "."):
            return -1
    return -1


def _choose(
    expected: Mapping[str, torch.Tensor],
    candidates: list[tuple[tuple[str, ...], dict[str, Any]]],
    label: str,
) -> _Fit:
    model = _Model(expected)
    fits = [_fit(model, where, names) for where, names in candidates]
    if not fits:
        raise ModelError(f"{label}: checkpoint holds no tensors")
    # most names that fit, then fewest problems, then the outermost; with nothing that fits,
    # the file's root is the one to report
    fits.sort(key=lambda f: (-len(f.mapping), f.problems if f.mapping else 0, len(f.where)))
    best = fits[0]
    if best.perfect:
        chosen = {id(v) for v in best.names.values()}
        rivals = [f for f in fits[1:] if f.perfect and {id(v) for v in f.names.values()} != chosen]
        if rivals:
            tied = [best, *rivals]
            preferred = [f for f in tied if f.where and f.where[-1] in PREFERRED_KEYS]
            if len(preferred) == 1:
                return preferred[0]
            keys = ", ".join(".".join(f.where) for f in tied[:4])
            raise ModelError(
                f"{label}: several dicts fit the model ({keys}); choose one with FILE#key"
            )
    return best


def _describe(fit: _Fit, model: nn.Module) -> str:
    parts = []
    for label_, names in (
        ("missing", fit.missing),
        ("unexpected", fit.unexpected),
        ("wrong shape", fit.wrong_shape),
        ("wrong dtype", fit.wrong_dtype),
    ):
        if names:
            more = f" (+{len(names) - 6} more)" if len(names) > 6 else ""
            parts.append(f"{label_}: {', '.join(names[:6])}{more}")
    where = f" (in {'.'.join(fit.where)})" if fit.where else ""
    return f"weights{where} do not fit {type(model).__name__} — " + "; ".join(parts)


def _model_bytes(expected: Mapping[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in expected.values())


# --------------------------------------------------------------------------------------------
# Loading for a model


def load_state_for(
    model: nn.Module, path: str | Path, key: str | None = None
) -> tuple[OrderedDict[str, torch.Tensor], dict[str, Any]]:
    """Read the weights in ``path`` that fit ``model``, checking before reading any tensor.

    The file's tensors (in whichever nested dict fits the model best, or the one ``key``
    names; ``path`` may also read ``FILE#key``) are matched with ``model.state_dict()`` by
    name — a common prefix on either side is matched too — shape and dtype; missing
    ``num_batches_tracked`` buffers are accepted. Only then are the storages read, if they
    hold at most :data:`BUDGET_FACTOR` times the model's own bytes.

    Returns
    -------
    state, metadata
        The state-dict under the model's names (without missing ``num_batches_tracked``),
        and the file's FuseVis metadata (empty for pickles).
    """
    source = Path(path)
    if key is None and not source.is_file():
        source, key = _file_and_key(str(path))
    label = WeightsSource("", source, key).label
    if not source.is_file():
        raise ModelError(f"{source}: weights file not found")
    expected = model.state_dict()
    own = _model_bytes(expected)
    budget = BUDGET_FACTOR * own + BUDGET_SLACK
    why = f" ({BUDGET_FACTOR}× the {own:,} bytes of {type(model).__name__}'s own weights)"
    try:
        if _is_safetensors(source):
            return _safetensors_for(model, expected, source, key, label, budget)
        checkpoint = read_checkpoint(source)
        entries = tensor_entries(checkpoint.root, str(source))
        fit = _choose(expected, _candidates(entries, key, label), label)
        if not fit.perfect:
            raise ModelError(f"{label}: {_describe(fit, model)}")
        refs = {target: fit.names[name] for target, name in fit.mapping.items()}
        tensors = checkpoint.read_tensors(refs, budget, why)
        return OrderedDict((k, tensors[k]) for k in expected if k in tensors), {}
    except FuseVisError:
        raise
    except Exception as error:  # noqa: BLE001 - a hostile file may raise anything
        raise ModelError(
            f"{label}: cannot read weights ({type(error).__name__}: {one_line(error, 160)})"
        ) from None


def _is_safetensors(path: Path) -> bool:
    if path.suffix == ".safetensors":
        return True
    with path.open("rb") as handle:
        head = handle.read(9)
    return len(head) == 9 and head[8:9] == b"{" and head[:4] != b"PK\x03\x04"


def _safetensors_header(path: Path) -> None:
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(8)
    if len(head) < 8:
        raise ModelError(f"{path}: not a readable safetensors file (too short)")
    (length,) = struct.unpack("<Q", head)
    if length > MAX_SAFETENSORS_HEADER or 8 + length > size:
        raise ModelError(
            f"{path}: not a readable safetensors file (header of {length:,} bytes "
            f"in a file of {size:,})"
        )


def _parse_metadata(raw: Mapping[str, str] | None, path: Path) -> dict[str, Any]:
    text = (raw or {}).get(METADATA_KEY)
    if not text:
        return {}
    try:
        meta = json.loads(text)
    except ValueError as error:
        raise ModelError(
            f"{path}: its {METADATA_KEY} metadata is not valid JSON ({one_line(error, 80)})"
        ) from None
    if not isinstance(meta, dict):
        raise ModelError(f"{path}: its {METADATA_KEY} metadata is not a JSON object")
    return meta


def _safetensors_infos(path: Path) -> tuple[dict[str, _Info], dict[str, Any]]:
    from safetensors import safe_open

    _safetensors_header(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw_meta = handle.metadata()
            infos = {}
            for name in handle.keys():
                piece = handle.get_slice(name)
                dtype_name = str(piece.get_dtype())
                infos[name] = _Info(
                    tuple(int(n) for n in piece.get_shape()),
                    _SAFETENSORS_DTYPES.get(dtype_name),
                    dtype_name,
                )
    except Exception as error:  # noqa: BLE001 - any reader failure becomes one line
        raise ModelError(
            f"{path}: not a readable safetensors file ({one_line(error, 160)})"
        ) from None
    return infos, _parse_metadata(raw_meta, path)


def _read_safetensors(path: Path, names: Sequence[str]) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return {name: handle.get_tensor(name) for name in names}
    except Exception as error:  # noqa: BLE001
        raise ModelError(
            f"{path}: not a readable safetensors file ({one_line(error, 160)})"
        ) from None


def _check_digest(path: Path, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    if "sha256" in meta and tensor_digest(tensors) != meta["sha256"]:
        raise ModelError(f"{path}: tensor digest does not match its metadata (corrupt?)")


def _safetensors_for(
    model: nn.Module,
    expected: Mapping[str, torch.Tensor],
    source: Path,
    key: str | None,
    label: str,
    budget: int,
) -> tuple[OrderedDict[str, torch.Tensor], dict[str, Any]]:
    infos, meta = _safetensors_infos(source)
    entries = [(tuple(name.split(".")), info) for name, info in infos.items()]
    fit = _choose(expected, _candidates(entries, key, label), label)
    if not fit.perfect:
        raise ModelError(f"{label}: {_describe(fit, model)}")
    needed = sum(
        math.prod(fit.names[name].shape) * fit.names[name].dtype.itemsize
        for name in fit.mapping.values()
    )
    if needed > budget:
        raise ModelError(f"{label}: its tensors hold {needed:,} bytes, more than {budget:,}")
    read = _read_safetensors(source, list(fit.mapping.values()))
    if key is None and len(read) == len(infos):
        _check_digest(source, meta, read)
    state = OrderedDict((t, read[fit.mapping[t]]) for t in expected if t in fit.mapping)
    return state, meta


def apply_state(model: nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """Load ``state`` into ``model`` strictly, with an error naming every mismatch.

    A missing ``num_batches_tracked`` buffer is accepted (the model keeps its own), as
    PyTorch does for checkpoints saved before BatchNorm counted batches.
    """
    expected = model.state_dict()
    fit = _fit(_Model(expected), (), dict(state))
    if not fit.perfect:
        raise ModelError(f"{source}: {_describe(fit, model)}")
    renamed = OrderedDict((target, state[name]) for target, name in fit.mapping.items())
    for name, value in expected.items():
        if name not in renamed and name.rsplit(".", 1)[-1] == _BATCHES:
            renamed[name] = value
    try:
        model.load_state_dict(renamed, strict=True)
    except Exception as error:  # noqa: BLE001 - one line, naming the file
        raise ModelError(
            f"{source}: weights do not fit {type(model).__name__} ({one_line(error, 200)})"
        ) from None


def load_weights(model: nn.Module, weights: str | Path | Mapping[str, Any] | Sequence[Any]) -> None:
    """Load a weights specification (see :func:`parse_weights`) into ``model``.

    Each file is read with :func:`load_state_for` into its part (the whole model, or the
    sub-module a ``part=FILE`` names); every parameter and buffer of the model must be
    given by exactly one file (``num_batches_tracked`` excepted). Nothing is loaded into
    the model unless every file fits.
    """
    label = one_line(weights if isinstance(weights, str | Path) else repr(weights), 200)
    try:
        sources = parse_weights(weights)
        loaded: list[tuple[nn.Module, OrderedDict[str, torch.Tensor], str]] = []
        covered: list[str] = []
        for source in sources:
            part = model
            if source.part:
                try:
                    part = model.get_submodule(source.part)
                except AttributeError:
                    names = ", ".join(n for n, _ in model.named_children()) or "none"
                    raise ModelError(
                        f"{source.label}: {type(model).__name__} has no part {source.part!r} "
                        f"(its parts: {names})"
                    ) from None
            state, _ = load_state_for(part, source.path, source.key)
            loaded.append((part, state, source.label))
            covered.append(source.part)
        if covered != [""]:
            left = [
                name
                for name in model.state_dict()
                if name.rsplit(".", 1)[-1] != _BATCHES
                and not any(name.startswith(part + ".") for part in covered)
            ]
            if left:
                more = f" (+{len(left) - 6} more)" if len(left) > 6 else ""
                raise ModelError(
                    f"{label}: no file gives {type(model).__name__}'s {', '.join(left[:6])}{more}"
                )
        for part, state, where in loaded:
            apply_state(part, state, where)
    except FuseVisError:
        raise
    except Exception as error:  # noqa: BLE001 - the boundary: never another exception type
        raise ModelError(
            f"{label}: cannot load weights ({type(error).__name__}: {one_line(error, 160)})"
        ) from None


# --------------------------------------------------------------------------------------------
# Loading without a model


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Return the FuseVis metadata stored in a safetensors file (empty if none)."""
    from safetensors import safe_open

    source = Path(path)
    _safetensors_header(source)
    try:
        with safe_open(str(source), framework="pt") as handle:
            raw = handle.metadata()
    except Exception as error:  # noqa: BLE001 - any reader failure becomes one line
        raise ModelError(
            f"{source}: not a readable safetensors file ({one_line(error, 160)})"
        ) from None
    return _parse_metadata(raw, source)


def load_state(
    path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[OrderedDict[str, torch.Tensor], dict[str, Any]]:
    """Read weights from a safetensors file, a state-dict pickle or a pickled module.

    For callers that know no model: the state dict is the one under a usual key
    (``state_dict``, ``model``, ...) or the one ``FILE#key`` names, else every tensor of
    the file; a ``module.`` prefix on every name is removed. The tensors (and the storages
    read) may hold at most ``max_bytes``. Prefer :func:`load_state_for`, which checks the
    file against the model before reading.

    Returns the state-dict and the metadata (empty for pickles). For FuseVis's own files
    the stored tensor digest is checked.
    """
    source, key = Path(path), None
    if not source.is_file():
        source, key = _file_and_key(str(path))
    label = WeightsSource("", source, key).label
    if not source.is_file():
        raise ModelError(f"{source}: weights file not found")
    try:
        if _is_safetensors(source):
            infos, meta = _safetensors_infos(source)
            names = [n for n in infos if key is None or n.startswith(key + ".")]
            total = sum(
                math.prod(infos[n].shape) * (infos[n].dtype or torch.uint8).itemsize for n in names
            )
            if total > max_bytes:
                raise ModelError(
                    f"{label}: its tensors hold {total:,} bytes, more than {max_bytes:,}"
                )
            read = _read_safetensors(source, names)
            if key is None:
                _check_digest(source, meta, read)
                return OrderedDict(read), meta
            return OrderedDict((n[len(key) + 1 :], t) for n, t in read.items()), meta
        checkpoint = read_checkpoint(source)
        return _state_without_model(checkpoint, key, label, max_bytes), {}
    except FuseVisError:
        raise
    except Exception as error:  # noqa: BLE001
        raise ModelError(
            f"{label}: cannot read weights ({type(error).__name__}: {one_line(error, 160)})"
        ) from None


def _state_without_model(
    checkpoint: Checkpoint, key: str | None, label: str, max_bytes: int
) -> OrderedDict[str, torch.Tensor]:
    entries = tensor_entries(checkpoint.root, checkpoint.source)
    if key is None and isinstance(checkpoint.root, dict):
        for usual in PREFERRED_KEYS:
            if any(path[:1] == (usual,) for path, _ in entries):
                key = usual
                break
    refs: OrderedDict[str, TensorRef] = OrderedDict()
    for path, ref in entries:
        start = 0 if key is None else _key_length(path, key)
        if start >= 0 and start < len(path):
            refs[".".join(path[start:])] = ref
    if not refs:
        raise ModelError(f"{label}: checkpoint holds no tensors")
    if all(name.startswith("module.") for name in refs):  # saved from DataParallel
        refs = OrderedDict((name[len("module.") :], ref) for name, ref in refs.items())
    viewed = sum(ref.nbytes for ref in refs.values())
    if viewed > max_bytes:
        raise ModelError(f"{label}: its tensors hold {viewed:,} bytes, more than {max_bytes:,}")
    return checkpoint.read_tensors(refs, max_bytes)
