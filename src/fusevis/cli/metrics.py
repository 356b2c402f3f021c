"""``fusevis metrics``: the quality metrics of a fused image, under a named convention.

Imported whenever ``fusevis`` starts, so nothing heavy at the top: the convention names the
help text shows are repeated here (``tests/cli/test_metrics_command.py`` checks them).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fusevis.cli.options import (
    Axis,
    MaxPixels,
    MetricConventionOption,
    SliceIndex,
    metric_convention,
)
from fusevis.errors import InputError

if TYPE_CHECKING:
    import numpy as np

    from fusevis.metrics import MetricConvention


def metrics_command(
    fused: Annotated[Path, typer.Argument(help="The fused image.")],
    inputs: Annotated[list[Path], typer.Argument(help="Its input images, input 1 first.")],
    convention: MetricConventionOption = "fusevis",
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print JSON (metrics, convention and its choices) instead."),
    ] = False,
    slice_index: SliceIndex = None,
    axis: Axis = 2,
    max_pixels: MaxPixels = None,
) -> None:
    """Measure a FUSED image against its INPUT images (EN, MI, SSIM, Q^AB/F, VIF, PSNR, ...).

    8- and 16-bit files count as their type's range (x/255, x/65535); float images in
    [0, 1] as they are, other float or signed images min-max scaled; a volume gives its
    slice, min-max scaled. Colour images stay RGB for the convention to measure per
    channel or on luminance. Non-finite values print as "inf" (JSON: null).
    """
    from fusevis.metrics import fusion_metrics

    chosen = metric_convention(convention)
    fused_image = read_for_metrics(fused, slice_index, axis, max_pixels)
    images = [read_for_metrics(path, slice_index, axis, max_pixels) for path in inputs]
    height, width = fused_image.shape[:2]
    for path, image in zip(inputs, images, strict=True):
        if image.shape[:2] != (height, width):
            raise InputError(
                path,
                f"size {image.shape[0]}x{image.shape[1]} differs from the fused image "
                f"{fused} ({height}x{width})",
            )
    try:
        values = fusion_metrics(fused_image, images, chosen)
    except InputError as error:  # name the file, not its position
        names = {"fused image": fused} | {f"input {k}": p for k, p in enumerate(inputs, 1)}
        raise InputError(names.get(error.source or "", error.source), error.problem) from None
    if as_json:
        typer.echo(_as_json(fused, inputs, chosen, values))
    else:
        _print_table(fused, inputs, chosen, values, (height, width))


def read_for_metrics(
    path: Path, slice_index: int | None, axis: int, max_pixels: int | None
) -> np.ndarray:
    """One image as float64 in [0, 1], (H, W) grey or (H, W, 3) RGB (see the command)."""
    import numpy as np

    from fusevis.io.readers import is_volume, read_raster

    if is_volume(path):
        from fusevis.io import load_image

        image = load_image(
            path, normalize="minmax", slice_index=slice_index, axis=axis, max_pixels=max_pixels
        )
        return image.data.astype(np.float64)
    pixels = read_raster(path, max_pixels).pixels
    if pixels.dtype.kind == "u":
        return pixels.astype(np.float64) / float(np.iinfo(pixels.dtype).max)
    values = pixels.astype(np.float64)
    if not np.isfinite(values).all():
        raise InputError(path, "contains NaN or infinite values")
    low, high = float(values.min()), float(values.max())
    if 0.0 <= low and high <= 1.0:
        return values
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


def _as_json(
    fused: Path, inputs: list[Path], chosen: MetricConvention, values: dict[str, float]
) -> str:
    import json
    import math
    from dataclasses import asdict

    finite = {key: (value if math.isfinite(value) else None) for key, value in values.items()}
    report = {
        "fused": str(fused),
        "inputs": [str(path) for path in inputs],
        "convention": chosen.name,
        "choices": asdict(chosen),
        "metrics": finite,
    }
    return json.dumps(report, indent=2, ensure_ascii=False)


def _print_table(
    fused: Path,
    inputs: list[Path],
    chosen: MetricConvention,
    values: dict[str, float],
    shape: tuple[int, int],
) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        "metric",
        "value",
        "meaning",
        title=f"{fused.name} ({shape[0]}x{shape[1]}) against {len(inputs)} inputs: "
        f"convention {chosen.name}",
        caption=chosen.summary(),
    )
    for key, value in values.items():
        table.add_row(key, f"{value:.4f}", chosen.meaning(key, len(inputs)))
    Console().print(table)
