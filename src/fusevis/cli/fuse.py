"""``fusevis fuse``: run a fusion network and write the fused image."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fusevis.cli.options import (
    Adapt,
    AllSlices,
    Axis,
    Color,
    DisplayName,
    Inputs,
    MaxPixels,
    ModelChoice,
    ModelName,
    Normalize,
    Parts,
    Rule,
    Scheduler,
    Series,
    SliceIndex,
    Threads,
    WeightsPath,
    Workers,
    load_inputs_and_model,
    refuse,
    use_threads,
)
from fusevis.cli.volumes import NAMING, volume_command


def fuse_command(
    inputs: Inputs,
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help=".png, .npy, .npz or .nii.gz; with --all-slices .nii.gz: " + NAMING,
        ),
    ],
    model: ModelName = None,
    weights: WeightsPath = None,
    adapt: Adapt = None,
    name: DisplayName = None,
    parts: Parts = None,
    rule: Rule = None,
    color: Color = None,
    normalize: Normalize = None,
    slice_index: SliceIndex = None,
    axis: Axis = 2,
    device: Annotated[str, typer.Option(help="cpu or cuda")] = "cpu",
    max_pixels: MaxPixels = None,
    series: Series = None,
    threads: Threads = None,
    all_slices: AllSlices = False,
    workers: Workers = 2,
    scheduler: Scheduler = None,
) -> None:
    """Fuse INPUT images with a network and write the fused image.

    PNG output is min-max scaled to 8 bits (as the paper published its images); array
    outputs keep the network's raw values. With --color ycbcr the fused Y is recoloured
    with the colour input's Cb/Cr (or as --adapt chroma= says; PNG becomes RGB; .npz also
    stores ``rgb``).

    With --all-slices (NIfTI volumes): every slice along --axis, each fused as a 2-D run
    of that slice would be (normalised per slice), on Dask; the fused volume is written on
    the inputs' grid (RAS+ affine, their units). Slices where an input is constant are
    zeros.
    """
    choice = ModelChoice(model, weights, adapt, name, parts, rule, color, normalize)
    if all_slices:
        refuse("--all-slices", slice=slice_index is not None, series=bool(series))
        volume_command(
            "fuse", inputs, output, choice, axis, device, max_pixels, workers, scheduler, threads
        )
        return
    import numpy as np

    from fusevis.io import recolor, save_image
    from fusevis.io.writers import check_writable
    from fusevis.models.adapter import Adapter
    from fusevis.models.inference import fuse, minmax

    check_writable(output)
    use_threads(threads)
    image_set, display, network = load_inputs_and_model(
        "fuse", inputs, choice, slice_index, axis, max_pixels, series
    )
    fused = fuse(network, image_set.stack(), device)
    extra: dict[str, np.ndarray] = {}
    picture: np.ndarray = fused
    if output.suffix == ".png":
        picture = minmax(fused)
    if isinstance(network, Adapter):
        rgb = network.recolor(minmax(fused), image_set.images)
    else:
        colour = image_set.color_image
        chroma = colour.chroma if colour is not None else None
        rgb = recolor(minmax(fused), chroma) if chroma is not None else None
    if rgb is not None:
        extra["rgb"] = rgb.astype(np.float32)
        if output.suffix == ".png":
            picture = extra["rgb"]
    written = save_image(picture, output, image_set[0].spacing, **extra)
    typer.echo(f"wrote {written} ({fused.shape[0]}x{fused.shape[1]}, {display})")
