"""One network on one image set: fused image, guidance (and influence) maps, metrics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from fusevis.io import ImageSet
from fusevis.metrics import fusion_metrics
from fusevis.metrics.conventions import DEFAULT_CONVENTION, get_convention
from fusevis.models.inference import as_tensors, check_input_count, minmax
from fusevis.saliency import MapCache, cached_maps, compute_maps
from fusevis.saliency.tensors import forward_selected

if TYPE_CHECKING:
    from fusevis.analysis.truth import TruthScore


@dataclass
class SetResult:
    """What FuseVis measures of one network on one image set.

    Attributes
    ----------
    fused : numpy.ndarray
        (H, W) network output.
    guidance : list of numpy.ndarray
        Per input, (H, W) ∂F(p)/∂x_k(p) (channels summed).
    share : list of numpy.ndarray or None
        Per input, its share of the influence Σ_q |∂F(p)/∂x_k(q)| (None without influence).
    metrics : dict
        :func:`fusevis.metrics.fusion_metrics` of the min-max scaled fused image (the form
        the paper published) against the inputs.
    truth : TruthScore or None
        Agreement of the maps with the set's ground truth, where it has one
        (:func:`fusevis.analysis.truth.score_result`).
    convention : str
        The metric convention the metrics were computed under
        (:data:`fusevis.metrics.conventions.CONVENTIONS`).
    """

    fused: np.ndarray
    guidance: list[np.ndarray]
    share: list[np.ndarray] | None
    metrics: dict[str, float]
    truth: TruthScore | None = None
    convention: str = DEFAULT_CONVENTION


def analyse_set(
    model: nn.Module,
    image_set: ImageSet,
    influence: bool = True,
    cache: MapCache | None = None,
    progress: Callable[[int, int], None] | None = None,
    convention: str = DEFAULT_CONVENTION,
) -> SetResult:
    """Fuse ``image_set`` with ``model`` and compute its maps and metrics (CPU, float32).

    With ``cache`` the maps go through the on-disk cache (resumable); without, they are
    computed in memory. The metrics follow the named ``convention``.
    """
    check_input_count(model, len(image_set))
    model.eval()
    tensors = as_tensors(image_set.stack())
    with torch.no_grad():
        fused = forward_selected(model, tensors, 0)[0].numpy().astype(np.float32)
    if cache is not None:
        maps = cached_maps(model, tensors, influence=influence, cache=cache, progress=progress)
    else:
        maps = compute_maps(model, tensors, influence=influence, progress=progress)
    guidance = [maps.guidance_2d(k).astype(np.float32) for k in range(len(image_set))]
    chosen = get_convention(convention)
    metrics = fusion_metrics(minmax(fused), [image.data for image in image_set], chosen)
    return SetResult(fused, guidance, maps.share, metrics, convention=chosen.name)
