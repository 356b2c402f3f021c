"""``fusevis report``: a static HTML comparison of networks on one image set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from fusevis.cli.options import MaxPixels, Series, Threads, use_threads
from fusevis.errors import InputError
from fusevis.io import load_image, load_images
from fusevis.io.writers import check_writable

ModelList = Annotated[
    list[str], typer.Option("--model", "-m", help="Network to compare; repeat for several.")
]
WeightsList = Annotated[
    list[str] | None,
    typer.Option("--weights", "-w", help="Weights for the --model in the same position."),
]
Influence = Annotated[
    bool,
    typer.Option(
        "--influence/--no-influence",
        help="Also compute influence maps (each input's share of Σ|J|; about 4× the time).",
    ),
]
CacheDir = Annotated[
    Path | None, typer.Option(help="Folder caching maps (default $FUSEVIS_CACHE).")
]


def progress_bar() -> Progress:
    """The progress bar of the map computations."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} passes"),
        TimeElapsedColumn(),
    )


def report_command(
    inputs: Annotated[list[Path], typer.Argument(help="Registered input images, input 1 first.")],
    model: ModelList,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for index.html and figures.")],
    weights: WeightsList = None,
    mask: Annotated[
        Path | None,
        typer.Option(help="Region mask image (non-zero inside); default: automatic regions."),
    ] = None,
    influence: Influence = True,
    cache: CacheDir = None,
    max_pixels: MaxPixels = None,
    series: Series = None,
    threads: Threads = None,
) -> None:
    """Compare networks on one image set: fused images, maps, metrics, per-region statistics."""
    from fusevis.analysis import analyse_set, automatic_regions
    from fusevis.analysis.regions import mask_regions
    from fusevis.analysis.report import write_report
    from fusevis.models.specs import load_named_models
    from fusevis.saliency import MapCache

    check_writable(out, "folder")
    use_threads(threads)
    image_set = load_images(inputs, max_pixels=max_pixels, series=series or None)
    arrays = [image.data for image in image_set]
    if mask is not None:
        mask_image = load_image(mask, normalize="none", max_pixels=max_pixels)
        if mask_image.shape != image_set[0].shape:
            raise InputError(mask, f"mask shape {mask_image.shape} differs from the inputs")
        regions = mask_regions(np.asarray(mask_image.data))
    else:
        regions = automatic_regions(arrays)
    models = load_named_models(model, weights)
    results = {}
    with progress_bar() as bar:
        for name, network in models.items():
            task = bar.add_task(f"{name} {'influence' if influence else 'guidance'}", total=None)
            results[name] = analyse_set(
                network,
                image_set,
                influence=influence,
                cache=MapCache(cache) if cache else MapCache(),
                progress=lambda done, total, task=task: bar.update(
                    task, completed=done, total=total
                ),
            )
    index = write_report(
        out,
        f"FuseVis report: {', '.join(models)}",
        [str(p) for p in inputs],
        arrays,
        results,
        regions,
    )
    typer.echo(f"wrote {index}")
