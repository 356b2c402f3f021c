"""Train the shipped Fuse3D weights on the demo MRI + PET volume pair.

Run from the repository root:

    OMP_NUM_THREADS=1 .venv/bin/python scripts/train_fuse3d.py

It writes src/fusevis/models/weights/Fuse3D.safetensors (or --out) with its metadata: this
command, the configuration, the training time and the scores on the whole demo volume.
About three and a half minutes on one CPU core.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from fusevis.io.demo import demo_volume_arrays
from fusevis.models.volumes import Fuse3D
from fusevis.models.weights import save_weights
from fusevis.training.volumes import VolumeTrainConfig, train_volume_model, volume_scores

WEIGHTS = Path("src/fusevis/models/weights/Fuse3D.safetensors")


def main(argv: list[str] | None = None) -> int:
    """Train, score and save; print progress every 25 steps."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = VolumeTrainConfig()
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--crop", type=int, default=defaults.crop)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    args = parser.parse_args(argv)
    config = VolumeTrainConfig(args.steps, args.batch_size, args.crop, args.lr, True, args.seed)
    arrays, _ = demo_volume_arrays()
    volumes = [arrays["mri"], arrays["pet"]]
    torch.manual_seed(config.seed)
    model = Fuse3D()

    def log(step: int, terms: dict[str, float]) -> None:
        if step % 25 == 0 or step == config.steps - 1:
            print(
                f"step {step:4d} loss {terms['loss']:.4f} "
                f"ssim {terms['ssim1']:.3f} {terms['ssim2']:.3f}",
                flush=True,
            )

    start = time.perf_counter()
    train_volume_model(model, volumes, config, log)
    seconds = time.perf_counter() - start
    scores = volume_scores(model, volumes)
    print(f"trained in {seconds:.0f} s; whole demo volume: {scores}")
    command = "OMP_NUM_THREADS=1 python scripts/train_fuse3d.py " + shlex.join(sys.argv[1:])
    metadata = {
        "model": "Fuse3D",
        "trained_on": (
            "the demo volume pair (fusevis.io.demo.demo_volume_arrays: MNI152 T1 + simulated "
            "FDG-PET, 98x116x94 voxels of 2 mm), random crops"
        ),
        "preprocessing": "each volume min-max scaled to [0, 1], float32 (as demo_volume_arrays)",
        "loss": {
            "formula": "fusion_loss: lambda*[g*(1-SSIM(F,x1)) + (1-g)*(1-SSIM(F,x2))] "
            "+ (1-lambda)*[g2*MSE(F,x1) + (1-g2)*MSE(F,x2)]",
            "lambda": 0.99,
            "gamma_ssim": 0.5,
            "gamma_l2": 0.5,
            "ssim": "pytorch-msssim on (B, 1, D, H, W): 11-voxel gaussian window along each "
            "axis, sigma 1.5, data_range 1, fused volume clipped at 0",
        },
        "epochs": 1,
        "config": {
            **asdict(config),
            "crops": f"{config.crop}^3 voxels, random position, random flip per axis",
            "optimizer": "Adam",
            "lr_schedule": "cosine",
            "threads": torch.get_num_threads(),
        },
        "scores": {"demo_volume": scores},
        "training_time_s": round(seconds, 1),
        "command": command.strip(),
    }
    save_weights(model, args.out, metadata)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
