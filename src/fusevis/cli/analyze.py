"""``fusevis analyze``: a dataset × networks on Dask, into Zarr plus a summary table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fusevis.cli.options import (
    Adapt,
    Color,
    DisplayName,
    MetricConventionOption,
    ModelList,
    Normalize,
    Parts,
    Rule,
    Scheduler,
    Threads,
    WeightsList,
    Workers,
    metric_convention,
    use_threads,
)
from fusevis.cli.report import Influence


def analyze_command(
    data: Annotated[Path, typer.Option(help="Dataset folder: one subfolder per modality.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Zarr store, e.g. results.zarr.")],
    model: ModelList = None,
    modalities: Annotated[
        str, typer.Option(help="Modality subfolders in input order, comma-separated.")
    ] = "mri,pet",
    weights: WeightsList = None,
    adapt: Adapt = None,
    name: DisplayName = None,
    parts: Parts = None,
    rule: Rule = None,
    color: Color = None,
    normalize: Normalize = None,
    influence: Influence = False,
    truth: Annotated[
        str | None,
        typer.Option(
            help="Ground-truth subfolders, comma-separated, paired by name like the "
            "modalities: one focus-mask folder (two modalities) or one quality folder per "
            "modality. Adds each network's agreement with it to the summary (docs/tasks.md)."
        ),
    ] = None,
    workers: Workers = 2,
    scheduler: Scheduler = None,
    threads: Threads = None,
    convention: MetricConventionOption = "fusevis",
) -> None:
    """Fused images, guidance (and influence) maps and metrics of every image set × network.

    The metrics follow --convention (a column of the summary says which; groups computed
    under another convention are computed again).

    Runs on a Dask LocalCluster (or --scheduler); a rerun skips finished groups, so an
    interrupted run resumes where it stopped. Each network's group is named by its display
    name (--name). With --truth, the summary also says how well each network's influence
    share and guidance agree with the ground truth (AUC for a focus mask, Spearman for
    exposure qualities).
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from fusevis.analysis.dataset_run import analyze, summary_paths
    from fusevis.analysis.truth import FOCUS_BAND
    from fusevis.io.writers import check_writable
    from fusevis.models.specs import choose_loading, model_specs

    check_writable(out, "folder")
    chosen = metric_convention(convention)
    names = [m.strip() for m in modalities.split(",") if m.strip()]
    truth_folders = [t.strip() for t in (truth or "").split(",") if t.strip()]
    specs = model_specs(model, weights, adapt, name, parts, rule)
    loading = choose_loading(specs, normalize, color)
    use_threads(threads)
    columns = (
        TextColumn("analyze"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("groups"),
        TimeElapsedColumn(),
    )
    with Progress(*columns) as bar:
        task = bar.add_task("analyze", total=None)
        summary = analyze(
            data,
            names,
            specs,
            out,
            influence=influence,
            workers=workers,
            scheduler=scheduler,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
            loading=(loading.normalize or "minmax", loading.color or "gray"),
            truth=truth_folders,
            convention=chosen.name,
        )
    csv_path, parquet_path = summary_paths(out)
    typer.echo(f"wrote {out} ({len(summary)} groups), {csv_path} and {parquet_path}")
    if truth_folders:
        from fusevis.analysis.truth import MEANING

        task = "multi-exposure" if len(truth_folders) == len(names) else "multi-focus"
        typer.echo(f"truth columns: {MEANING[task].format(band=FOCUS_BAND)}")
