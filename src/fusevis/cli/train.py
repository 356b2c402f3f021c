"""``fusevis train``: train a fusion network on a paired dataset or a synthetic task."""

from __future__ import annotations

import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

import fusevis
from fusevis.cli.options import MaxPixels, Threads, use_threads
from fusevis.errors import FuseVisError


def _modalities(values: list[str]) -> list[str]:
    names = [part for value in values for part in value.split(",") if part]
    if len(names) != 2:
        raise FuseVisError(f"training needs exactly two modalities, got {names}")
    return names


TASK_CHOICES = ("paired", "multi-focus", "multi-exposure")


def _stops(text: str) -> tuple[float, ...]:
    try:
        stops = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise FuseVisError(f"--stops {text!r}: give two exposure stops such as 0,3") from None
    if len(stops) != 2 or min(stops) < 0:
        raise FuseVisError(f"--stops {text!r}: give two exposure stops >= 0, such as 0,3")
    return stops


def _check_task(task: str, data: Path | None, images: Path | None, target: str | None) -> str:
    """The training target of ``task``, after checking the options that go with it."""
    if task not in TASK_CHOICES:
        raise FuseVisError(f"unknown --task {task!r}; choose from {', '.join(TASK_CHOICES)}")
    if target not in (None, "inputs", "truth"):
        raise FuseVisError(f"unknown --target {target!r}; choose from inputs, truth")
    if task == "paired":
        if data is None:
            raise FuseVisError(
                "--task paired needs --data (a folder of one subfolder per modality)"
            )
        if images is not None:
            raise FuseVisError("--images is for --task multi-focus or multi-exposure; use --data")
        if target == "truth":
            raise FuseVisError("a paired dataset has no ground truth: --target inputs only")
        return "inputs"
    if data is not None:
        raise FuseVisError(f"--task {task} makes its pairs from --images, not --data")
    return target or "truth"


def train_command(
    model: Annotated[str, typer.Option("--model", "-m", help="Network to train.")],
    task: Annotated[
        str,
        typer.Option(
            help="paired: a dataset of registered pairs in --data (MRI-PET by default, "
            "infrared-visible, ...); multi-focus or multi-exposure: pairs made on the fly "
            "from the pictures in --images with the recipes of docs/tasks.md."
        ),
    ] = "paired",
    data: Annotated[
        Path | None, typer.Option(help="Dataset folder: one subfolder per modality (paired).")
    ] = None,
    images: Annotated[
        Path | None,
        typer.Option(
            help="Folder of pictures to make multi-focus / multi-exposure pairs from "
            "(default: scikit-image's pictures, without those of the held-out sets)."
        ),
    ] = None,
    scale: Annotated[
        int,
        typer.Option(help="Reduce pictures to this shorter side (0: keep) before cropping."),
    ] = 256,
    stops: Annotated[
        str, typer.Option(help="multi-exposure: the two exposures' stops (gain 2^stop).")
    ] = "0,3",
    target: Annotated[
        str | None,
        typer.Option(
            help="truth: supervised SSIM + L1 against the ground truth (default for the "
            "synthetic tasks); inputs: the paper's unsupervised loss (the only one for paired)."
        ),
    ] = None,
    heldout_saliency: Annotated[
        bool,
        typer.Option(help="Also score saliency against the truth on the held-out sets (minutes)."),
    ] = False,
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
    lam: Annotated[
        float | None,
        typer.Option(
            "--lambda", help="Weight of the SSIM terms (default 0.99; 0.84 with --target truth)."
        ),
    ] = None,
    gamma_ssim: float = 0.5,
    gamma_l2: float = 0.5,
    range_weight: Annotated[
        float,
        typer.Option(
            help="Weight of the range term: mean distance of the fused image from [0, 1] "
            "(0: the paper's loss; the shipped paper networks use 1)."
        ),
    ] = 0.0,
    ssim_clip: Annotated[
        bool,
        typer.Option(
            help="Take the loss's SSIM of the fused image clipped at 0 (stops an unbounded "
            "network from learning the inverted image); --no-ssim-clip with a range term."
        ),
    ] = True,
    steps_per_epoch: Annotated[
        int | None,
        typer.Option(help="Steps per epoch (default: pairs / batch size; 100 on the fly)."),
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
    """Train MODEL on a paired dataset, or on multi-focus / multi-exposure pairs made on the fly.

    --task paired (the default) trains on the registered pairs in --data with the FuseVis
    paper's SSIM + MSE loss. --task multi-focus or multi-exposure cuts random crops (seeded)
    from the pictures in --images and makes each pair with the recipe of fusevis.io.tasks
    (complementary defocus by a random focus mask; exposure gain, clipping and a gamma
    camera response), training against the known fused image; at the end the network is
    scored on the held-out sets against their ground truth.

    Writes OUT/checkpoint.pt every epoch, OUT/loss.csv and OUT/loss.png, and at the end
    OUT/weights.safetensors with metadata (data, recipe, preprocessing, loss, epochs and
    steps, seed, time, scores, the date and this exact command).
    """
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from fusevis.io import load_images
    from fusevis.io.writers import check_writable
    from fusevis.models.registry import resolve_model
    from fusevis.models.weights import save_weights
    from fusevis.training import LossWeights, TrainConfig, train
    from fusevis.training.evaluate import ssim_scores

    objective = _check_task(task, data, images, target)
    if range_weight < 0:
        raise FuseVisError(f"--range-weight must be 0 or more, got {range_weight}")
    check_writable(out, "folder")
    use_threads(threads)
    synthetic = task != "paired"
    lam_value = lam if lam is not None else (0.84 if objective == "truth" else 0.99)
    if synthetic:
        inputs = _synthetic_inputs(
            task, images, crop, scale, _stops(stops), seed, batch_size, flips, max_pixels
        )
        steps_per_epoch = steps_per_epoch or 100
    else:
        inputs = _paired_inputs(data, _modalities(modalities), limit, max_pixels)  # type: ignore[arg-type]
    network = resolve_model(model, weights=None)
    config = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        crop=crop or None,
        flips=flips,
        lr=lr,
        loss=LossWeights(lam_value, gamma_ssim, gamma_l2, range_weight, ssim_clip),
        steps_per_epoch=steps_per_epoch,
        seed=seed,
        device=device,
        clip_grad=clip_grad,
        schedule=lr_schedule,
        skip_nonfinite=skip_nonfinite,
        target=objective,
        truth_lambda=lam_value,
        freeze_batchnorm=synthetic,
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
        progress_task = bar.add_task(f"train {model}", total=None, terms="")

        def report(step: int, total: int, terms: dict[str, float]) -> None:
            if "ssim_truth" in terms:
                text = (
                    f"loss {terms['loss']:.4f} ssim {terms['ssim_truth']:.3f} "
                    f"l1 {terms['l1_truth']:.4f}"
                )
            else:
                text = (
                    f"loss {terms['loss']:.4f} ssim {terms['ssim1']:.3f}/{terms['ssim2']:.3f} "
                    f"mse {terms['mse1']:.4f}/{terms['mse2']:.4f}"
                )
            bar.update(progress_task, completed=step, total=total, terms=text)

        summary = train(
            network,
            inputs.get("pairs"),
            out,
            config,
            resume=resume,
            progress=report,
            sampler=inputs.get("sampler"),
        )
    network = network.cpu().eval()
    scores: dict[str, Any] = {}
    if test_pair:
        scores = ssim_scores(network, load_images(test_pair, max_pixels=max_pixels))
        scores["test_pair"] = [str(p) for p in test_pair]
    if synthetic:
        from fusevis.analysis.heldout import heldout_scores

        typer.echo(
            "scoring on the held-out sets" + (" (saliency: minutes)" if heldout_saliency else "")
        )
        scores["heldout"] = heldout_scores(network, task, saliency=heldout_saliency)
    if objective == "truth":
        loss_meta: dict[str, Any] = {
            "target": "truth",
            "lambda": lam_value,
            "formula": "lambda*(1-SSIM(F,T)) + (1-lambda)*mean|F-T|, T the ground truth",
            "ssim": "pytorch-msssim, 11x11 gaussian window, sigma 1.5, data_range 1, "
            "fused image clipped at 0",
        }
    else:
        loss_meta = {
            "target": "inputs",
            "lambda": lam_value,
            "gamma_ssim": gamma_ssim,
            "gamma_l2": gamma_l2,
            "range_weight": range_weight,
            "ssim_clip": ssim_clip,
            "formula": "lambda*[g*(1-SSIM(F,x1)) + (1-g)*(1-SSIM(F,x2))] + (1-lambda)*[g2*MSE"
            "(F,x1) + (1-g2)*MSE(F,x2)] + range_weight*mean(max(-F,0) + max(F-1,0))",
            "ssim": "pytorch-msssim, 11x11 gaussian window, sigma 1.5, data_range 1, "
            + ("fused image clipped at 0" if ssim_clip else "fused image as it is"),
        }
    per_epoch = steps_per_epoch or max(1, len(inputs["pairs"]) // batch_size)
    metadata = {
        "model": type(network).__name__,
        "task": "medical/paired" if not synthetic else task,
        "trained_on": inputs["trained_on"],
        "recipe": inputs.get("recipe", {}),
        "preprocessing": inputs["preprocessing"],
        "loss": loss_meta,
        "epochs": epochs,
        "steps": summary["epochs_done"] * per_epoch,
        "seed": seed,
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
        "scores": scores or {"test_pair": []},
        "training_time_s": round(summary["elapsed_s"], 1),
        "command": "fusevis train " + shlex.join(sys.argv[2:] if len(sys.argv) > 2 else []),
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "fusevis_version": fusevis.__version__,
    }
    path = save_weights(network, out / "weights.safetensors", metadata)
    shown = {k: v for k, v in scores.items() if k != "heldout"}
    if "heldout" in scores:
        shown["held-out mean"] = scores["heldout"]["mean"]
    typer.echo(
        f"wrote {path} after {summary['elapsed_s']:.0f} s; last loss "
        f"{summary['last'].get('loss', float('nan')):.4f}; scores {shown}"
    )


def _paired_inputs(
    data: Path, names: list[str], limit: int | None, max_pixels: int | None
) -> dict[str, Any]:
    """The pairs of a dataset folder, stacked, and how they were read (for the metadata)."""
    from rich.progress import BarColumn, Progress, TextColumn

    from fusevis.io import PairedDataset
    from fusevis.training import stack_pairs

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
    return {
        "pairs": stack_pairs(sets),
        "trained_on": f"{data} ({count} pairs, modalities {', '.join(names)})",
        "preprocessing": "grey by luminance 0.2989R+0.5870G+0.1140B, per-image min-max to "
        "[0, 1], float32, tensors (B, 1, H, W)",
    }


def _synthetic_inputs(
    task: str,
    images: Path | None,
    crop: int,
    scale: int,
    stops: tuple[float, ...],
    seed: int,
    batch_size: int,
    flips: bool,
    max_pixels: int | None,
) -> dict[str, Any]:
    """A sampler making ``task``'s pairs on the fly, and the recipe (for the metadata)."""
    from fusevis.io.tasks import CRF_GAMMA, DEFOCUS_SIGMA, DYNAMIC_RANGE
    from fusevis.training.pairs import load_pictures, sample_task_batch, step_generator

    if crop <= 0:
        raise FuseVisError(f"--task {task} needs a crop size > 0 (--crop)")
    pictures = load_pictures(images, crop=crop, scale=scale, max_pixels=max_pixels)

    def sampler(step: int) -> Any:
        rng = step_generator(seed, step)
        return sample_task_batch(pictures, task, batch_size, crop, rng, flips, stops)  # type: ignore[arg-type]

    if task == "multi-focus":
        recipe: dict[str, Any] = {
            "defocus": f"gaussian_filter(sigma={DEFOCUS_SIGMA}, reflect) of the crop; input 1 "
            "sharp where the mask, input 2 elsewhere (fusevis.io.tasks.defocus_pair)",
            "masks": "random_focus_mask: half-plane, ellipse or smoothed-noise blob, "
            "uniformly, inverted with probability 1/2",
            "truth": "the sharp crop",
        }
    else:
        recipe = {
            "exposure": f"8-stop log-encoded scene (dynamic range {DYNAMIC_RANGE:g}), gains "
            f"2^stop for stops {list(stops)}, sensor clipped at 1, gamma {CRF_GAMMA} CRF "
            "(fusevis.io.tasks.exposure_stack)",
            "truth": "the crop (the scene's picture)",
        }
    recipe["crops"] = (
        f"{crop}x{crop}, picture drawn uniformly, random flips {flips}, numpy generator "
        f"seeded (seed, step)"
    )
    return {
        "sampler": sampler,
        "trained_on": pictures.describe(),
        "recipe": recipe,
        "preprocessing": "grey by luminance, min-max to [0, 1], reduced (anti-aliased) to a "
        f"shorter side of {scale} px when larger, float32; crops not rescaled; BatchNorm "
        "layers frozen in eval mode while training (fixed affine, running statistics 0/1)",
    }
