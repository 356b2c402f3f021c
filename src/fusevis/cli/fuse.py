"""``fusevis fuse``: run a fusion network and write the fused image."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from fusevis.cli.options import (
    Axis,
    Color,
    Inputs,
    MaxPixels,
    ModelName,
    Normalize,
    Series,
    SliceIndex,
    Threads,
    WeightsPath,
    read_inputs,
    use_threads,
)
from fusevis.io import recolor, save_image
from fusevis.io.writers import check_writable


def fuse_command(
    inputs: Inputs,
    model: ModelName,
    output: Annotated[Path, typer.Option("--output", "-o", help=".png, .npy, .npz or .nii.gz")],
    weights: WeightsPath = None,
    color: Color = "gray",
    normalize: Normalize = "minmax",
    slice_index: SliceIndex = None,
    axis: Axis = 2,
    device: Annotated[str, typer.Option(help="cpu or cuda")] = "cpu",
    max_pixels: MaxPixels = None,
    series: Series = None,
    threads: Threads = None,
) -> None:
    """Fuse INPUT images with a network and write the fused image.

    PNG output is min-max scaled to 8 bits (as the paper published its images); array
    outputs keep the network's raw values. With --color ycbcr the fused Y is recoloured
    with the colour input's Cb/Cr (PNG becomes RGB; .npz also stores ``rgb``).
    """
    from fusevis.models.inference import fuse, minmax
    from fusevis.models.registry import resolve_model

    check_writable(output)
    use_threads(threads)
    image_set = read_inputs(inputs, color, normalize, slice_index, axis, max_pixels, series)
    network = resolve_model(model, weights if weights is not None else "DEFAULT")
    fused = fuse(network, image_set.stack(), device)
    colour = image_set.color_image
    extra: dict[str, np.ndarray] = {}
    picture: np.ndarray = fused
    if output.suffix == ".png":
        picture = minmax(fused)
    if colour is not None and colour.chroma is not None:
        rgb = recolor(minmax(fused), colour.chroma).astype(np.float32)
        extra["rgb"] = rgb
        if output.suffix == ".png":
            picture = rgb
    written = save_image(picture, output, image_set[0].spacing, **extra)
    typer.echo(f"wrote {written} ({fused.shape[0]}x{fused.shape[1]}, {type(network).__name__})")
