"""Fusion networks, their registry, and weights with metadata."""

from fusevis.models.averaging import WeightedAverage
from fusevis.models.paper import DeepFuse, DeepPedestrian, FunFuseAn, MaskNet
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
    "DeepFuse",
    "DeepPedestrian",
    "FunFuseAn",
    "MaskNet",
    "ModelEntry",
    "WeightedAverage",
    "Weights",
    "apply_state",
    "get_entry",
    "get_model",
    "list_models",
    "load_state",
    "read_metadata",
    "register_model",
    "resolve_model",
    "safe_load",
    "save_weights",
]
