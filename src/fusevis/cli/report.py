"""``fusevis report``: a static HTML comparison of networks on one image set."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fusevis.cli.options import (
    Adapt,
    Color,
    DisplayName,
    MaxPixels,
    MetricConventionOption,
    ModelList,
    Normalize,
    Parts,
    Rule,
    Series,
    Threads,
    WeightsList,
    metric_convention,
    use_threads,
)
from fusevis.errors import InputError

if TYPE_CHECKING:
    from rich.progress import Progress

__all__ = ["CacheDir", "Influence", "ModelList", "WeightsList", "progress_bar", "report_command"]

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
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} passes"),
        TimeElapsedColumn(),
    )


def report_command(
    inputs: Annotated[list[Path], typer.Argument(help="Registered input images, input 1 first.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for index.html and figures.")],
    model: ModelList = None,
    weights: WeightsList = None,
    adapt: Adapt = None,
    name: DisplayName = None,
    parts: Parts = None,
    rule: Rule = None,
    mask: Annotated[
        Path | None,
        typer.Option(help="Region mask image (non-zero inside); default: automatic regions."),
    ] = None,
    influence: Influence = True,
    truth: Annotated[
        list[Path] | None,
        typer.Option(
            help="Ground truth to score the maps against: one focus mask (input 1 in focus "
            "where >= half its maximum; two inputs) or one quality map per input (repeat the "
            "option). See docs/tasks.md."
        ),
    ] = None,
    cache: CacheDir = None,
    color: Color = None,
    normalize: Normalize = None,
    max_pixels: MaxPixels = None,
    series: Series = None,
    threads: Threads = None,
    convention: MetricConventionOption = "fusevis",
) -> None:
    """Compare networks on one image set: fused images, maps, metrics, per-region statistics.

    The metrics follow --convention (the report states which).

    With --truth, also how well each network's influence share and guidance agree with the
    ground truth (AUC for a focus mask, Spearman for exposure qualities).
    """
    import numpy as np

    from fusevis.analysis import analyse_set, automatic_regions
    from fusevis.analysis.regions import mask_regions
    from fusevis.analysis.report import write_report
    from fusevis.analysis.truth import load_truth, score_result
    from fusevis.io import load_image, load_images
    from fusevis.io.writers import check_writable
    from fusevis.models.inference import check_input_count
    from fusevis.models.specs import (
        build_model,
        check_loaded,
        choose_loading,
        model_specs,
        name_models,
    )
    from fusevis.saliency import MapCache

    check_writable(out, "folder")
    chosen = metric_convention(convention)
    specs = model_specs(model, weights, adapt, name, parts, rule)
    loading = choose_loading(specs, normalize, color)
    use_threads(threads)
    image_set = load_images(
        inputs,
        color=loading.color,  # type: ignore[arg-type]
        normalize=loading.normalize,  # type: ignore[arg-type]
        max_pixels=max_pixels,
        series=series or None,
    )
    arrays = [image.data for image in image_set]
    if mask is not None:
        mask_image = load_image(mask, normalize="none", max_pixels=max_pixels)
        if mask_image.shape != image_set[0].shape:
            raise InputError(mask, f"mask shape {mask_image.shape} differs from the inputs")
        regions = mask_regions(np.asarray(mask_image.data))
    else:
        regions = automatic_regions(arrays)
    ground = (
        load_truth(truth, len(image_set), image_set.shape, max_pixels=max_pixels) if truth else None
    )
    models = name_models([(spec, build_model(spec, len(image_set))) for spec in specs])
    for network in models.values():
        check_input_count(network, len(image_set))
    check_loaded(models, image_set.images)
    results = {}
    with progress_bar() as bar:
        for title, network in models.items():
            task = bar.add_task(f"{title} {'influence' if influence else 'guidance'}", total=None)
            results[title] = analyse_set(
                network,
                image_set,
                influence=influence,
                cache=MapCache(cache) if cache else MapCache(),
                progress=lambda done, total, task=task: bar.update(
                    task, completed=done, total=total
                ),
                convention=chosen,
            )
            if ground is not None:
                results[title].truth = score_result(results[title], ground)
    index = write_report(
        out,
        f"FuseVis report: {', '.join(models)}",
        [str(p) for p in inputs],
        arrays,
        results,
        regions,
    )
    for title, result in results.items():
        if result.truth is not None:
            shown = ", ".join(
                f"{key} {value:.3f}" if isinstance(value, float) else f"{key} {value}"
                for key, value in result.truth.row().items()
                if key != "truth" and value != ""
            )
            typer.echo(f"{title} against the {result.truth.task} truth: {shown}")
    scored = next((r.truth for r in results.values() if r.truth is not None), None)
    if scored is not None:
        typer.echo(f"({scored.meaning()})")
    typer.echo(f"wrote {index}")
