"""What an :class:`~fusevis.notebook.Explorer` is given, turned into an image set and models.

Inputs may be tensors, numpy arrays or file paths (anything :func:`fusevis.io.load_image`
reads), or an :class:`~fusevis.io.ImageSet`; models may be ``nn.Module`` objects, names of
shipped networks (``"DeepFuse"``) or command-line model specs, one or a list (or a dict of
display names to modules). Every problem is one :class:`~fusevis.errors.FuseVisError` line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from os import PathLike
from typing import Any

import numpy as np
import torch
from torch import nn

from fusevis.errors import InputError, ModelError
from fusevis.io import Image, ImageSet, image_from_array, load_image
from fusevis.models.specs import check_loaded, load_named_models
from fusevis.viewer.volume import VolumeSet, all_volumes

ModelsArgument = nn.Module | str | Sequence[nn.Module | str] | Mapping[str, nn.Module]


def as_image(item: Any, index: int) -> Image:
    """One input as a normalised :class:`Image` (a path is read, an array is min-max scaled)."""
    label = f"input {index + 1}"
    if isinstance(item, Image):
        return item
    if isinstance(item, str | PathLike):
        return load_image(item)
    if isinstance(item, torch.Tensor):
        item = item.detach().cpu().numpy()
    if isinstance(item, np.ndarray):
        array = np.squeeze(item)
        if array.ndim != 2:
            raise InputError(label, f"expected one 2-D grey image, got shape {item.shape}")
        return image_from_array(array, label)
    raise InputError(
        label, f"expected a tensor, a numpy array or a file path, not {type(item).__name__}"
    )


def as_volume_set(inputs: Any) -> VolumeSet | None:
    """The inputs as volumes, when they are (a VolumeSet, or paths of volumes only)."""
    if isinstance(inputs, VolumeSet):
        return inputs
    if (
        isinstance(inputs, Sequence)
        and not isinstance(inputs, str)
        and len(inputs) >= 2
        and all(isinstance(item, str | PathLike) for item in inputs)
        and all_volumes(inputs)
    ):
        return VolumeSet.read(inputs)
    return None


def as_image_set(inputs: Any) -> ImageSet:
    """The inputs as an :class:`ImageSet` (two or more images of one shape)."""
    if isinstance(inputs, ImageSet):
        return inputs
    if isinstance(inputs, str | PathLike | np.ndarray | torch.Tensor) or not isinstance(
        inputs, Sequence
    ):
        raise InputError(None, "give the inputs as a tuple, e.g. Explorer(model, (mri, pet))")
    if len(inputs) < 2:
        raise InputError(None, f"a fusion needs two or more inputs, got {len(inputs)}")
    return ImageSet([as_image(item, k) for k, item in enumerate(inputs)])


def as_models(models: ModelsArgument, image_set: ImageSet) -> dict[str, nn.Module]:
    """The networks by display name, checked against the image set."""
    if isinstance(models, nn.Module | str):
        models = [models]
    if isinstance(models, Mapping):
        named = dict(models)
        for name, model in named.items():
            if not isinstance(model, nn.Module):
                raise ModelError(f"model {name!r} is a {type(model).__name__}, not an nn.Module")
    elif isinstance(models, Sequence) and models:
        named = {}
        for model in models:
            if isinstance(model, str):
                loaded = load_named_models([model], num_inputs=len(image_set))
            elif isinstance(model, nn.Module):
                own = getattr(model, "display_name", None)
                loaded = {own if isinstance(own, str) and own else type(model).__name__: model}
            else:
                raise ModelError(
                    f"a model must be an nn.Module or a network's name, not {type(model).__name__}"
                )
            for name, built in loaded.items():
                unique, count = name, 1
                while unique in named:
                    count += 1
                    unique = f"{name}-{count}"
                named[unique] = built
    else:
        raise ModelError("give a model, a network's name, or a list of them")
    if not named:
        raise ModelError("give at least one model")
    check_loaded(named, list(image_set))
    return named
