"""Options shared by the commands that read input images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fusevis.io import ImageSet, load_images
from fusevis.io.limits import DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV

Inputs = Annotated[list[Path], typer.Argument(help="Registered input images, input 1 first.")]
ModelName = Annotated[
    str,
    typer.Option("--model", "-m", help="Registered name, package.module:Name or file.py:Name."),
]
WeightsPath = Annotated[
    str | None,
    typer.Option(
        "--weights",
        "-w",
        help=(
            "Weights file: .safetensors, .pth/.pt state dict or pickled module (read without "
            "running code); FILE#key picks a nested dict; part=FILE,part=FILE loads each "
            "file into that sub-module. Default: the shipped pretrained ones."
        ),
    ),
]
Color = Annotated[
    str, typer.Option(help="gray: luminance (the paper); ycbcr: fuse Y, keep colour.")
]
Normalize = Annotated[str, typer.Option(help="minmax (the paper), percentile or none.")]
SliceIndex = Annotated[
    int | None, typer.Option("--slice", help="Slice of volume inputs (default: middle).")
]
Axis = Annotated[int, typer.Option(help="Axis to slice volume inputs along.")]
MaxPixels = Annotated[
    int | None,
    typer.Option(
        "--max-pixels",
        min=1,
        help=(
            "Largest image (pixels) or volume (voxels) an input may announce; checked from "
            f"the file's header before decoding. Default: ${MAX_PIXELS_ENV}, else "
            f"{DEFAULT_MAX_PIXELS}."
        ),
    ),
]
Series = Annotated[
    list[str] | None,
    typer.Option(
        "--series",
        help=(
            "DICOM folder holding several series: the one to read, by its number in the "
            "listing, its UID or the UID's end; repeat to choose one per input."
        ),
    ),
]
Device = Annotated[str, typer.Option(help="auto (CUDA when available), cpu or cuda.")]
Threads = Annotated[
    int | None,
    typer.Option(
        "--threads",
        min=1,
        help=(
            "CPU threads for torch (default: torch's own, one per core). On a busy machine one "
            "thread is often much faster than several."
        ),
    ),
]


def use_threads(threads: int | None) -> None:
    """Limit torch's intra-op threads to ``threads`` (None: leave torch's default)."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def read_inputs(
    inputs: list[Path],
    color: str,
    normalize: str,
    slice_index: int | None,
    axis: int,
    max_pixels: int | None = None,
    series: list[str] | None = None,
) -> ImageSet:
    """Load the command's input images with the shared options."""
    return load_images(
        inputs,
        color=color,
        normalize=normalize,  # type: ignore[arg-type]
        slice_index=slice_index,
        axis=axis,
        max_pixels=max_pixels,
        series=series or None,
    )


Channel = Annotated[int, typer.Option(help="Output channel to explain.")]
