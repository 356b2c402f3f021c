"""Fusion networks, their registry, and weights with metadata."""

from fusevis.models.adapter import Adapter, Conventions, adapt, display_name, fuse_chroma
from fusevis.models.averaging import WeightedAverage
from fusevis.models.paper import DeepFuse, DeepPedestrian, FunFuseAn, MaskNet
from fusevis.models.parts import Assembled, L1Norm, make_rule
from fusevis.models.registry import (
    REQUIRED_METADATA,
    ModelEntry,
    Weights,
    get_entry,
    get_model,
    list_models,
    register_model,
    resolve_model,
)
from fusevis.models.safe_pickle import safe_load
from fusevis.models.weights import apply_state, load_state, read_metadata, save_weights

__all__ = [
    "REQUIRED_METADATA",
    "Adapter",
    "Assembled",
    "Conventions",
    "DeepFuse",
    "DeepPedestrian",
    "FunFuseAn",
    "L1Norm",
    "MaskNet",
    "ModelEntry",
    "WeightedAverage",
    "Weights",
    "adapt",
    "apply_state",
    "display_name",
    "fuse_chroma",
    "get_entry",
    "get_model",
    "list_models",
    "load_state",
    "make_rule",
    "read_metadata",
    "register_model",
    "resolve_model",
    "safe_load",
    "save_weights",
]
