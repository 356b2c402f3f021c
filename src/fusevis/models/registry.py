"""A registry of fusion networks and their weights, in the manner of torchvision.

``list_models()`` names the registered networks, ``list_models(task)`` those meant for one
task (the paper's networks are MRI–PET ones; the :data:`TASK_NETWORKS`, such as
``DeepFuse-multiexposure``, were trained on synthetic multi-focus or multi-exposure pairs;
``Fuse3D``, task ``volume``, fuses MRI–PET volumes with 3-D convolutions).
``get_model(name, weights=...)`` builds one (in eval mode) with ``weights="DEFAULT"`` (the
shipped pretrained weights), ``None`` (random initialisation) or a path to any weights
file. ``resolve_model`` also accepts a user's own network as ``package.module:Name`` or
``path/to/file.py:Name``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from fusevis.errors import FuseVisError, ModelError
from fusevis.models.averaging import WeightedAverage
from fusevis.models.paper import DeepFuse, DeepPedestrian, FunFuseAn, MaskNet
from fusevis.models.safe_pickle import one_line
from fusevis.models.volumes import Fuse3D
from fusevis.models.weights import load_weights, read_metadata

WEIGHTS_DIR = Path(__file__).parent / "weights"

REQUIRED_METADATA = (
    "model",
    "trained_on",
    "preprocessing",
    "loss",
    "epochs",
    "scores",
    "training_time_s",
    "command",
    "sha256",
)


@dataclass(frozen=True)
class Weights:
    """A shipped weights file and the metadata stored inside it."""

    model: str
    tag: str
    path: Path

    @property
    def meta(self) -> dict[str, Any]:
        """Metadata read from the file (training data, preprocessing, scores, command...)."""
        return read_metadata(self.path)


@dataclass
class ModelEntry:
    """A registered network: how to build it and which weights ship with it."""

    name: str
    builder: Callable[[], nn.Module]
    weights: dict[str, Weights] = field(default_factory=dict)
    description: str = ""
    task: str = "medical"

    @property
    def default_weights(self) -> Weights | None:
        """The weights that ``weights="DEFAULT"`` selects, if any are shipped."""
        return self.weights.get("DEFAULT")


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str, description: str = "", task: str = "medical"
) -> Callable[[Callable[[], nn.Module]], Any]:
    """Decorator registering a network class or factory under ``name``.

    Shipped weights are found as ``weights/<name>.safetensors`` and become ``DEFAULT``.
    ``task`` is the fusion task the network (its shipped weights) is meant for.
    """

    def wrap(builder: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        entry = ModelEntry(
            name,
            builder,
            description=description or (builder.__doc__ or "").strip().splitlines()[0],
            task=task,
        )
        shipped = WEIGHTS_DIR / f"{name}.safetensors"
        if shipped.is_file():
            entry.weights["DEFAULT"] = Weights(name, "DEFAULT", shipped)
        _REGISTRY[name] = entry
        return builder

    return wrap


for _cls in (FunFuseAn, MaskNet, DeepFuse, DeepPedestrian):
    register_model(_cls.__name__)(_cls)
register_model(
    "WeightedAverage", "Per-pixel intensity-weighted averaging (no weights).", task="any"
)(WeightedAverage)

register_model(
    "Fuse3D",
    "A small 3-D MRI-PET fusion network for volumes (see docs/volumes.md).",
    task="volume",
)(Fuse3D)

#: Paper architectures trained for another task (``fusevis train --task ...``): name,
#: architecture, task. Registered only where ``weights/<name>.safetensors`` ships.
TASK_NETWORKS: tuple[tuple[str, type[nn.Module], str], ...] = (
    ("DeepFuse-multiexposure", DeepFuse, "multi-exposure"),
    ("DeepFuse-multifocus", DeepFuse, "multi-focus"),
)
for _name, _cls, _task in TASK_NETWORKS:
    if (WEIGHTS_DIR / f"{_name}.safetensors").is_file():
        register_model(
            _name,
            f"{_cls.__name__} trained on synthetic {_task} pairs (see docs/tasks.md).",
            task=_task,
        )(_cls)


def list_models(task: str | None = None) -> list[str]:
    """Names of the registered networks; with ``task``, those meant for it (and ``any``)."""
    return [n for n, e in _REGISTRY.items() if task is None or e.task in (task, "any")]


def get_entry(name: str) -> ModelEntry:
    """The registry entry of ``name`` (case-insensitive)."""
    for key, entry in _REGISTRY.items():
        if key.lower() == name.lower():
            return entry
    raise ModelError(
        f"unknown model {name!r}; choose from {', '.join(_REGISTRY)} "
        "or give package.module:Name / file.py:Name"
    )


def get_model(name: str, weights: str | Path | None = "DEFAULT") -> nn.Module:
    """Build a registered network in eval mode.

    Parameters
    ----------
    name : str
        A name from :func:`list_models`.
    weights : {"DEFAULT"}, path, mapping, list or None
        ``"DEFAULT"`` loads the shipped weights (random init for networks without any, such
        as WeightedAverage, which has no parameters); ``None`` keeps random initialisation;
        a path loads that file (safetensors, state-dict pickle or pickled module;
        ``FILE#key`` picks a nested dict); ``"part=FILE,part=FILE"``, a ``{part: FILE}``
        mapping or a list of ``part=FILE`` loads each file into that sub-module (see
        :func:`fusevis.models.weights.parse_weights`).

    Raises
    ------
    ModelError
        For an unknown name or any problem with the weights (one line naming the file).
    """
    entry = get_entry(name)
    model = entry.builder()
    _load_into(model, entry, weights)
    return model.eval()


def _load_into(model: nn.Module, entry: ModelEntry | None, weights: Any) -> None:
    """Load ``weights`` into ``model``; any failure is a :class:`ModelError` (one line)."""
    try:
        _load_weights_spec(model, entry, weights)
    except FuseVisError:
        raise
    except Exception as error:  # noqa: BLE001 - the last resort: never another exception type
        raise ModelError(
            f"{one_line(weights, 200)}: cannot load weights "
            f"({type(error).__name__}: {one_line(error, 160)})"
        ) from None


def _load_weights_spec(model: nn.Module, entry: ModelEntry | None, weights: Any) -> None:
    if weights is None:
        return
    if isinstance(weights, str) and weights.upper() in ("DEFAULT", "PRETRAINED"):
        if entry is None:
            raise ModelError("DEFAULT weights exist only for registered models; pass a path")
        chosen = entry.default_weights
        if chosen is None:
            if any(True for _ in model.parameters()):
                raise ModelError(f"{entry.name} ships no pretrained weights; pass --weights")
            return
        weights = chosen.path
    load_weights(model, weights)


def _import_user_object(spec: str) -> Any:
    target, _, attribute = spec.rpartition(":")
    if not target or not attribute:
        raise ModelError(f"model spec {spec!r} must look like package.module:Name or file.py:Name")
    try:
        if target.endswith(".py"):
            path = Path(target)
            if not path.is_file():
                raise ModelError(f"{path}: model file not found")
            module_name = f"fusevis_user_{path.stem}"
            spec_obj = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(spec_obj)  # type: ignore[arg-type]
            sys.modules[module_name] = module
            spec_obj.loader.exec_module(module)  # type: ignore[union-attr]
        else:
            module = importlib.import_module(target)
    except ModelError:
        raise
    except Exception as error:  # noqa: BLE001 - report the user's import failure in one line
        raise ModelError(f"cannot import {target}: {type(error).__name__}: {error}") from None
    if not hasattr(module, attribute):
        raise ModelError(f"{target} has no attribute {attribute!r}")
    return getattr(module, attribute)


def resolve_model(spec: str, weights: str | Path | None = "DEFAULT") -> nn.Module:
    """Build a model from a registry name or a user's ``module:Name`` / ``file.py:Name``.

    ``Name`` may be an ``nn.Module`` subclass or a factory returning a module. For user
    models, ``weights="DEFAULT"`` means no weights (keep what the factory returns).
    """
    if ":" not in spec:
        return get_model(spec, weights)
    factory = _import_user_object(spec)
    try:
        model = factory()
    except Exception as error:  # noqa: BLE001
        raise ModelError(f"{spec}: constructing the model failed: {error}") from None
    if not isinstance(model, nn.Module):
        raise ModelError(f"{spec} did not return a torch.nn.Module")
    if not (isinstance(weights, str) and weights.upper() == "DEFAULT"):
        _load_into(model, None, weights)
    return model.eval()
