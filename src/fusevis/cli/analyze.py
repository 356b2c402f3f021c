"""``fusevis analyze``: a dataset × networks on Dask, into Zarr plus a summary table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from fusevis.cli.options import Threads, use_threads
from fusevis.cli.report import Influence, ModelList, WeightsList
from fusevis.io.writers import check_writable


def analyze_command(
    data: Annotated[Path, typer.Option(help="Dataset folder: one subfolder per modality.")],
    model: ModelList,
    out: Annotated[Path, typer.Option("--out", "-o", help="Zarr store, e.g. results.zarr.")],
    modalities: Annotated[
        str, typer.Option(help="Modality subfolders in input order, comma-separated.")
    ] = "mri,pet",
    weights: WeightsList = None,
    influence: Influence = False,
    workers: Annotated[int, typer.Option(help="Worker processes of the local cluster.")] = 2,
    scheduler: Annotated[
        str | None, typer.Option(help="tcp://HOST:PORT of an existing Dask scheduler.")
    ] = None,
    threads: Threads = None,
) -> None:
    """Fused images, guidance (and influence) maps and metrics of every image set × network.

    Runs on a Dask LocalCluster (or --scheduler); a rerun skips finished groups, so an
    interrupted run resumes where it stopped.
    """
    from fusevis.analysis.dataset_run import analyze, summary_paths

    check_writable(out, "folder")
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
            [m.strip() for m in modalities.split(",") if m.strip()],
            model,
            out,
            weights=weights or [],
            influence=influence,
            workers=workers,
            scheduler=scheduler,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    csv_path, parquet_path = summary_paths(out)
    typer.echo(f"wrote {out} ({len(summary)} groups), {csv_path} and {parquet_path}")
