"""``fusevis fuse|guidance ... --all-slices``: every slice of NIfTI volumes, as volumes."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from fusevis.cli.options import ModelChoice, use_threads
from fusevis.errors import InputError

NAMING = (
    "-o OUT.nii.gz writes OUT.nii.gz (fused); guidance also OUT_guidance-K.nii.gz per input "
    "K (1, 2, ...) and with --influence OUT_share-K.nii.gz; the slices wait in OUT.slices/ "
    "until all are done (a rerun resumes there)."
)


def volume_command(
    command: str,
    inputs: list[Path],
    output: Path,
    choice: ModelChoice,
    axis: int,
    device: str,
    max_pixels: int | None,
    workers: int,
    scheduler: str | None,
    threads: int | None,
    influence: bool = False,
    channel: int = 0,
    tile: int = 512,
) -> None:
    """Run ``command`` (``fuse`` or ``guidance``) on every slice and write NIfTI volumes.

    The output names are checked and the model's options parsed before any volume is read;
    see :func:`fusevis.analysis.volume_run.run_volume` for the run itself. ``threads``
    limits torch here (:func:`~fusevis.cli.options.use_threads`) and in each worker.
    """
    use_threads(threads)
    from fusevis.io.volumes import volume_output_paths
    from fusevis.io.writers import check_writable

    if workers < 1:
        raise InputError("--workers", f"needs at least 1 worker, got {workers}")
    guidance = command == "guidance"
    for path in volume_output_paths(output, len(inputs), guidance, guidance and influence).values():
        check_writable(path)
    from fusevis.analysis.volume_run import VolumeSettings, plan_volume, store_path

    check_writable(store_path(output), "folder")
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    spec, loading = choice.resolve(command)
    settings = VolumeSettings(
        spec=spec,
        mode="guidance" if guidance else "fuse",
        axis=axis,
        normalize=loading.normalize or "minmax",
        color=loading.color or "gray",
        influence=influence,
        channel=channel,
        tile=tile,
        device=device,
        threads=threads or max(1, (os.cpu_count() or 1) // workers),
    )
    columns = (
        TextColumn(f"{command} --all-slices"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("slices"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    plan = plan_volume(inputs, output, settings, max_pixels=max_pixels)  # errors before the bar
    with Progress(*columns) as bar:
        task = bar.add_task(command, total=None)
        result = plan.run(
            workers,
            scheduler,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    counts = (
        f"{len(result.computed)} slices computed, {len(result.reused)} resumed, "
        f"{len(result.background)} background (zeros)"
    )
    typer.echo(f"{spec.label}: {counts}\nwrote " + ", ".join(str(p) for p in result.paths.values()))
