"""Reading and writing network weights in every form users have.

* FuseVis's own files: safetensors with JSON metadata under the header key ``fusevis``.
* Plain ``state_dict`` pickles (``.pth``/``.pt``), read with ``torch.load(weights_only=True)``.
* Whole pickled modules saved the original FuseVis way (``torch.save(model)``), read with
  :func:`fusevis.models.safe_pickle.safe_load`, which executes no code from the file.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fusevis.errors import ModelError
from fusevis.models.safe_pickle import records_to_state_dict, safe_load

METADATA_KEY = "fusevis"


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


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Return the FuseVis metadata stored in a safetensors file (empty if none)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = (handle.metadata() or {}).get(METADATA_KEY)
    except Exception as error:  # noqa: BLE001 - any reader failure becomes one line
        raise ModelError(f"{path}: not a readable safetensors file ({error})") from None
    return json.loads(raw) if raw else {}


def load_state(path: str | Path) -> tuple[OrderedDict[str, torch.Tensor], dict[str, Any]]:
    """Read weights from a safetensors file, a state-dict pickle or a pickled module.

    Returns the state-dict and the metadata (empty for pickles). For FuseVis's own files the
    stored tensor digest is checked.
    """
    source = Path(path)
    if not source.is_file():
        raise ModelError(f"{source}: weights file not found")
    if source.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = OrderedDict(load_file(str(source)))
        except Exception as error:  # noqa: BLE001
            raise ModelError(f"{source}: not a readable safetensors file ({error})") from None
        meta = read_metadata(source)
        if "sha256" in meta and tensor_digest(state) != meta["sha256"]:
            raise ModelError(f"{source}: tensor digest does not match its metadata (corrupt?)")
        return state, meta
    try:
        loaded: Any = torch.load(source, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError):
        loaded = safe_load(source)  # whole pickled module: read without executing code
    except Exception as error:  # noqa: BLE001
        raise ModelError(f"{source}: not a readable PyTorch checkpoint ({error})") from None
    return _unwrap_state(loaded, source), {}


def _unwrap_state(loaded: Any, source: Path) -> OrderedDict[str, torch.Tensor]:
    if isinstance(loaded, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if key in loaded and isinstance(loaded[key], dict):
                loaded = loaded[key]
                break
    state = records_to_state_dict(loaded)
    if not state:
        raise ModelError(f"{source}: checkpoint holds no tensors")
    if all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = OrderedDict((k[len("module.") :], v) for k, v in state.items())
    return state


def apply_state(model: nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """Load ``state`` into ``model`` strictly, with an error naming every mismatch."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or wrong_shape:
        parts = []
        for label, names in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("wrong shape", wrong_shape),
        ):
            if names:
                more = f" (+{len(names) - 6} more)" if len(names) > 6 else ""
                shown = ", ".join(names[:6]) + more
                parts.append(f"{label}: {shown}")
        raise ModelError(
            f"{source}: weights do not fit {type(model).__name__} — " + "; ".join(parts)
        )
    model.load_state_dict(state, strict=True)
