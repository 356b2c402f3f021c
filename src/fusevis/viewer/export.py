"""The data of a view as ``.npz``: shared by the viewer's export route and the notebook widget."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

from fusevis.viewer.data import ViewerData
from fusevis.viewer.scheduler import MAP_KINDS
from fusevis.viewer.slices import SliceView


def export_arrays(
    data: ViewerData,
    name: str,
    pixel: tuple[int, int],
    rows: Sequence[np.ndarray],
    view: SliceView | None = None,
) -> dict[str, np.ndarray]:
    """Inputs, fused image, finished maps and the pixel's image-sized Jacobian rows.

    ``view``: the slice of a volume (default: the viewer's image set); its ``slice`` is
    saved as ``(axis, index)``. An estimate's maps are saved as ``estimated_guidance_k``
    (never under the exact names).
    """
    view = data.base if view is None else view
    arrays = {f"input_{k}": x for k, x in enumerate(view.inputs)}
    arrays["fused"] = view.sessions[name].fused
    arrays["pixel"] = np.array(pixel)
    if view.key is not None:
        arrays["slice"] = np.array(view.key)
    for kind in MAP_KINDS:
        progress = data.maps.progress(name, kind, view.key)
        if progress is not None and progress.finished:
            prefix = "estimated_" if progress.estimate else ""  # never saved as exact
            shown = progress.arrays.items()
            arrays.update({prefix + k: v for k, v in shown if k.startswith(kind)})
    arrays.update({f"jacobian_{k}": r for k, r in enumerate(rows)})
    return arrays


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """The arrays as a compressed ``.npz`` file's bytes."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()
