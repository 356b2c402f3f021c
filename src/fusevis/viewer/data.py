"""What a viewer shows: one image set, its models, the hover engine and the map scheduler.

:class:`ViewerData` only holds the parts together: the per-pixel work is
:class:`~fusevis.viewer.hover.HoverEngine`'s (one thread), the maps are
:class:`~fusevis.viewer.scheduler.MapScheduler`'s (another thread, stepping aside while
the user hovers). :func:`build_viewer_data` loads models named as on the command line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from fusevis.io import ImageSet
from fusevis.models.inference import as_tensors, minmax
from fusevis.models.specs import check_loaded, load_named_models
from fusevis.saliency import MapCache
from fusevis.viewer.hover import HoverEngine
from fusevis.viewer.scheduler import ASK_ABOVE_S, MapScheduler


class ViewerData:
    """An image set and the models to compare on it, with their two workers.

    Parameters
    ----------
    image_set : ImageSet
        The registered inputs (as the models take them).
    models : dict of str to nn.Module
        The networks to show, by display name (2-4 can be compared side by side).
    cache : MapCache, optional
        Where guidance and influence maps are cached (default: $FUSEVIS_CACHE).
    compute_maps : bool
        Start the guidance maps of the models in view by themselves (False: only when the
        page asks, per-pixel Jacobians only).
    ask_above_s : float
        Maps predicted to take longer than this many seconds wait for the user's go.

    Attributes
    ----------
    hover : HoverEngine
        The per-pixel engine (its ``sessions`` hold each model's fused image and field).
    maps : MapScheduler
        The background map jobs.
    """

    def __init__(
        self,
        image_set: ImageSet,
        models: dict[str, nn.Module],
        cache: MapCache | None = None,
        compute_maps: bool = True,
        ask_above_s: float = ASK_ABOVE_S,
    ) -> None:
        self.image_set = image_set
        self.tensors = as_tensors(image_set.stack())
        self.inputs = [minmax(x[0, 0].numpy()) for x in self.tensors]
        self.compute_maps = compute_maps
        self.hover = HoverEngine(self.tensors, models)
        self.shape = self.hover.shape
        self.maps = MapScheduler(
            self.tensors,
            {name: session.model for name, session in self.hover.sessions.items()},
            cache,
            busy=self.hover.busy,
            prior=self.predicted_seconds,
            ask_above_s=ask_above_s,
        )

    @property
    def names(self) -> list[str]:
        """The models' display names, in the order they were given."""
        return list(self.hover.sessions)

    def predicted_seconds(self, name: str, kind: str) -> float | None:
        """How long the maps of ``name`` will take, where that is known before starting.

        A model that is not local is computed with one full-image backward pass per pixel,
        each as long as one of its hovers; for a local model the first passes tell.
        """
        session = self.hover.sessions[name]
        if session.local or session.pixel_seconds <= 0:
            return None
        return self.shape[0] * self.shape[1] * session.pixel_seconds

    def pixel_frame(
        self,
        names: Sequence[str],
        pixel: tuple[int, int],
        superseded: Callable[[], bool] | None = None,
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
        """One hover answer: the engine's windows and the guidance values known at the pixel.

        Runs on the engine thread (``data.hover.submit(data.pixel_frame, ...)``); None when
        ``superseded`` said a newer pixel is wanted before every model was computed.
        """
        answer = self.hover.pixel_frame(names, pixel, superseded)
        if answer is None:
            return None
        header, arrays = answer
        row, col = header["pixel"]
        for name, info in header["models"].items():
            guidance = self.maps.arrays(name, "guidance")
            count = len(info["jacobian_at_pixel"])
            info["guidance_at_pixel"] = [
                _value_at(guidance.get(f"guidance_{k}"), row, col) for k in range(count)
            ]
            progress = self.maps.progress(name, "guidance")
            info["guidance_estimate"] = bool(progress is not None and progress.estimate)
        return header, arrays

    def close(self) -> None:
        """Stop the map worker, then the engine thread."""
        self.maps.close()
        self.hover.close()


def _value_at(array: np.ndarray | None, row: int, col: int) -> float | None:
    """A map's value at a pixel for a JSON header (None: not computed, or not finite)."""
    if array is None:
        return None
    value = float(array[row, col])
    return value if np.isfinite(value) else None


def build_viewer_data(
    image_set: ImageSet,
    models: Sequence[str] | None,
    weights: Sequence[str] | None = None,
    cache: str | Path | None = None,
    compute_maps: bool = True,
    *,
    adapt: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
    parts: Sequence[str] | None = None,
    rules: Sequence[str] | None = None,
    ask_above_s: float = ASK_ABOVE_S,
) -> ViewerData:
    """Load models named as on the command line onto an image set.

    ``models``, ``weights``, ``adapt``, ``names``, ``parts`` and ``rules`` are the
    repeatable options of :func:`fusevis.models.specs.load_named_models`, paired by
    position; every model is shown under its display name (``--name``, the adapter's
    name, the network's own ``display_name``, else the registered or class name).

    Raises
    ------
    InputError, ModelError
        One line, for a model that cannot be loaded or does not suit the images.
    """
    loaded = load_named_models(
        models, weights, adapt, names, num_inputs=len(image_set), parts=parts, rules=rules
    )
    check_loaded(loaded, list(image_set))
    return ViewerData(
        image_set,
        loaded,
        MapCache(cache) if cache is not None else None,
        compute_maps,
        ask_above_s=ask_above_s,
    )
