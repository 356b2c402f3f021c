"""``fusevis demo``: the most complete thing FuseVis can show on its built-in data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from fusevis.io import load_demo, save_image
from fusevis.models.inference import fuse, minmax
from fusevis.models.registry import get_entry, get_model, list_models
from fusevis.training.evaluate import ssim_scores


def _figure(panels: list[tuple[str, np.ndarray]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.9))
    for axis, (title, image) in zip(axes, panels, strict=True):
        axis.imshow(image, cmap="gray", vmin=0, vmax=1)
        axis.set_title(title, fontsize=9)
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def demo_command(
    name: Annotated[str, typer.Option(help="Demo set (see `fusevis data list`).")] = "mri-pet",
    out: Annotated[Path, typer.Option(help="Folder for the figure and fused images.")] = Path(
        "demo-output"
    ),
) -> None:
    """Fuse a demo image set with every shipped network and write an overview figure."""
    image_set = load_demo(name)
    stack = image_set.stack()
    panels = [(f"input {i + 1}", image.data) for i, image in enumerate(image_set)]
    table = Table("network", "weights", "SSIM to input 1", "SSIM to input 2")
    for model_name in list_models():
        entry = get_entry(model_name)
        if entry.default_weights is None and model_name != "WeightedAverage":
            continue
        model = get_model(model_name)
        fused = fuse(model, stack)
        save_image(minmax(fused), out / f"{model_name}.png")
        panels.append((model_name, minmax(fused)))
        scores = ssim_scores(model, image_set)
        tag = "shipped" if entry.default_weights is not None else "none needed"
        table.add_row(model_name, tag, f"{scores['ssim_1']:.3f}", f"{scores['ssim_2']:.3f}")
    _figure(panels, out / "overview.png")
    Console().print(table)
    typer.echo(f"wrote {out / 'overview.png'} and one fused PNG per network in {out}/")
