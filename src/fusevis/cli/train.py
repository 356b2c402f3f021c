"""``fusevis train``: train a fusion network with the paper's unsupervised loss."""

from __future__ import annotations

import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

import fusevis
from fusevis.cli.options import MaxPixels, Threads, use_threads
from fusevis.errors import FuseVisError


def _modalities(values: list[str]) -> list[str]:
    names = [part for value in values for part in value.split(",") if part]
    if len(names) != 2:
        raise FuseVisError(f"training needs exactly two modalities, got {names}")
    return names


def train_command(
    model: Annotated[str, typer.Option("--model", "-m", help="Network to train.")],
    data: Annotated[Path, typer.Option(help="Dataset folder: one subfolder per modality.")],
    modalities: Annotated[
        list[str], typer.Option(help="Subfolders in input order: mri,pet or repeat the option.")
    ] = ["mri,pet"],  # noqa: B006 - typer needs a list default
    out: Annotated[
        Path, typer.Option(help="Run folder: checkpoint, loss.csv/png, weights.")
    ] = Path("runs/train"),
    epochs: int = 10,
    batch_size: int = 8,
    crop: Annotated[int, typer.Option(help="Random crop size in pixels (0: whole images).")] = 96,
    flips: Annotated[bool, typer.Option(help="Random horizontal and vertical flips.")] = True,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 0.002,
    lam: Annotated[float, typer.Option("--lambda", help="Weight of the SSIM terms.")] = 0.99,
    gamma_ssim: float = 0.5,
    gamma_l2: float = 0.5,
    steps_per_epoch: Annotated[
        int | None, typer.Option(help="Steps per epoch (default: pairs / batch size).")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Use only the first N pairs.")] = None,
    seed: int = 0,
    clip_grad: Annotated[
        float | None, typer.Option(help="Clip the gradient norm to this value (off by default).")
    ] = None,
    skip_nonfinite: Annotated[
        bool, typer.Option(help="Skip steps whose loss is NaN/inf instead of stopping.")
    ] = False,
    lr_schedule: Annotated[
        str, typer.Option(help="constant (the paper) or cosine decay to 0 over all epochs.")
    ] = "constant",
    resume: Annotated[bool, typer.Option(help="Continue from OUT/checkpoint.pt.")] = False,
    test_pair: Annotated[
        list[Path] | None, typer.Option(help="Two images to score SSIM on (repeat twice).")
    ] = None,
    device: str = "cpu",
    max_pixels: MaxPixels = None,
    threads: Threads = None,
) -> None:
    """Train MODEL on a paired dataset with the FuseVis paper's SSIM + MSE loss.

    Writes OUT/checkpoint.pt every epoch, OUT/loss.csv and OUT/loss.png, and at the end
    OUT/weights.safetensors with metadata (data, preprocessing, loss weights, epochs, time,
    scores on --test-pair, and this exact command).
    """
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from fusevis.io import PairedDataset, load_images
    from fusevis.io.writers import check_writable
    from fusevis.models.registry import resolve_model
    from fusevis.models.weights import save_weights
    from fusevis.training import LossWeights, TrainConfig, stack_pairs, train
    from fusevis.training.evaluate import ssim_scores

    names = _modalities(modalities)
    check_writable(out, "folder")
    use_threads(threads)
    dataset = PairedDataset(data, names, color="gray", normalize="minmax", max_pixels=max_pixels)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    with Progress(
        TextColumn("loading"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        transient=True,
    ) as bar:
        task = bar.add_task("load", total=count)
        sets = []
        for index in range(count):
            sets.append(dataset[index])
            bar.advance(task)
    pairs = stack_pairs(sets)
    network = resolve_model(model, weights=None)
    config = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        crop=crop or None,
        flips=flips,
        lr=lr,
        loss=LossWeights(lam, gamma_ssim, gamma_l2),
        steps_per_epoch=steps_per_epoch,
        seed=seed,
        device=device,
        clip_grad=clip_grad,
        schedule=lr_schedule,
        skip_nonfinite=skip_nonfinite,
    )
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[terms]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns) as bar:
        task = bar.add_task(f"train {model}", total=None, terms="")

        def report(step: int, total: int, terms: dict[str, float]) -> None:
            bar.update(
                task,
                completed=step,
                total=total,
                terms=f"loss {terms['loss']:.4f} ssim {terms['ssim1']:.3f}/"
                f"{terms['ssim2']:.3f} mse {terms['mse1']:.4f}/{terms['mse2']:.4f}",
            )

        summary = train(network, pairs, out, config, resume=resume, progress=report)
    scores: dict[str, float] = {}
    if test_pair:
        scores = ssim_scores(network.cpu(), load_images(test_pair, max_pixels=max_pixels))
    metadata = {
        "model": type(network).__name__,
        "trained_on": f"{data} ({count} pairs, modalities {', '.join(names)})",
        "preprocessing": "grey by luminance 0.2989R+0.5870G+0.1140B, per-image min-max to "
        "[0, 1], float32, tensors (B, 1, H, W)",
        "loss": {
            "lambda": lam,
            "gamma_ssim": gamma_ssim,
            "gamma_l2": gamma_l2,
            "ssim": "pytorch-msssim, 11x11 gaussian window, sigma 1.5, data_range 1, "
            "fused image clipped at 0",
        },
        "epochs": epochs,
        "config": {
            "batch_size": batch_size,
            "crop": crop,
            "flips": flips,
            "lr": lr,
            "steps_per_epoch": steps_per_epoch,
            "seed": seed,
            "optimizer": "Adam",
            "clip_grad": clip_grad,
            "lr_schedule": lr_schedule,
            "skipped_nonfinite_steps": summary["skipped_steps"],
        },
        "scores": {"test_pair": [str(p) for p in test_pair or []], **scores},
        "training_time_s": round(summary["elapsed_s"], 1),
        "command": "fusevis train " + shlex.join(sys.argv[2:] if len(sys.argv) > 2 else []),
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "fusevis_version": fusevis.__version__,
    }
    path = save_weights(network, out / "weights.safetensors", metadata)
    typer.echo(
        f"wrote {path} after {summary['elapsed_s']:.0f} s; last loss "
        f"{summary['last'].get('loss', float('nan')):.4f}; scores {scores}"
    )
