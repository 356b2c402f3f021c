"""``fusevis demo``: the most complete thing FuseVis can show on its built-in data.

It fuses a demo pair with every shipped network, explains one fused pixel with each
network's exact per-pixel Jacobians, computes the guidance maps of one network for every
pixel, and writes the figures and a summary table.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fusevis.cli.options import use_threads
from fusevis.cli.view import AllowHost, Host, NoBrowser, Port, ViewerThreads, start_threads

if TYPE_CHECKING:
    import numpy as np

    from fusevis.io import ImageSet
    from fusevis.saliency import SaliencyMaps
    from fusevis.viewer.volume import VolumeSet


def _shipped_models(set_name: str = "mri-pet", inputs: int = 2) -> list[str]:
    """The shipped networks for a demo set's task that fuse its number of inputs.

    MRI–PET sets get the paper's networks; a multi-focus or multi-exposure set the networks
    trained for that task (first) and weighted averaging.
    """
    from fusevis.io.tasks import task_sets
    from fusevis.models.registry import get_entry, get_model, list_models

    task = next(
        (t for t in ("multi-focus", "multi-exposure") if set_name in task_sets(t)), "medical"
    )
    found = []
    for name in list_models(task):
        entry = get_entry(name)
        if entry.default_weights is None and name != "WeightedAverage":
            continue
        declared = getattr(get_model(name, weights=None), "num_inputs", None)
        if declared is None or declared == inputs:
            found.append(name)
    # the task's own networks first, DeepFuse first among them; otherwise the registry's order
    return sorted(found, key=lambda n: (get_entry(n).task != task, n != "DeepFuse"))


def _overview(
    path: Path,
    inputs: list[np.ndarray],
    rows: list[tuple[str, np.ndarray, list]],
    pixel: tuple[int, int],
) -> None:
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    count = len(inputs)
    figure, axes = plt.subplots(
        len(rows) + 1, count + 1, figsize=(2.9 * (count + 1), 2.7 * (len(rows) + 1))
    )
    for k, image in enumerate(inputs):
        axes[0, k].imshow(image, cmap="gray")
        axes[0, k].set_title(f"input {k + 1}", fontsize=9)
    axes[0, count].axis("off")
    axes[0, count].text(
        0,
        0.5,
        f"red square: fused pixel\n(row {pixel[0]}, col {pixel[1]})\n"
        "J k: its Jacobian row for\ninput k (field window)",
        fontsize=9,
    )
    for r, (name, fused, jacobians) in enumerate(rows, start=1):
        axes[r, 0].imshow(fused, cmap="gray")
        axes[r, 0].set_title(f"{name}: fused", fontsize=9)
        limit = max(float(np.abs(j).max()) for j, _ in jacobians) or 1.0
        for k, (jacobian, window) in enumerate(jacobians, start=1):
            extent = (window.left - 0.5, window.right - 0.5, window.bottom - 0.5, window.top - 0.5)
            shown = axes[r, k].imshow(
                jacobian[window.top : window.bottom, window.left : window.right],
                cmap="RdBu_r",
                vmin=-limit,
                vmax=limit,
                extent=extent,
            )
            axes[r, k].set_title(f"{name}: J {k}", fontsize=9)
            figure.colorbar(shown, ax=axes[r, k], fraction=0.046)
    for axis in axes.ravel():
        for image in axis.images:
            if image.get_extent()[1] > 100:
                axis.add_patch(
                    Rectangle((pixel[1] - 2, pixel[0] - 2), 4, 4, fill=False, edgecolor="red")
                )
        axis.tick_params(labelsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def _guidance_figure(path: Path, name: str, maps: SaliencyMaps) -> None:
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fusevis.models.inference import minmax

    g1, g2 = maps.guidance_2d(0), maps.guidance_2d(1)
    rgb = np.stack([minmax(g1), minmax(g2), minmax(maps.fused)], axis=-1)
    figure, axes = plt.subplots(1, 4, figsize=(13, 3.4))
    limit = max(float(np.abs(g1).max()), float(np.abs(g2).max())) or 1.0
    for axis, image, title in ((axes[0], g1, "G1 = dF(p)/dx1(p)"), (axes[1], g2, "G2")):
        shown = axis.imshow(image, cmap="RdBu_r", vmin=-limit, vmax=limit)
        axis.set_title(f"{name}: {title}", fontsize=9)
        figure.colorbar(shown, ax=axis, fraction=0.046)
    axes[2].imshow(rgb)
    axes[2].set_title("guidance RGB (R=G1, G=G2, B=fused)", fontsize=9)
    axes[3].scatter(g1.ravel(), g2.ravel(), s=0.3, alpha=0.3)
    axes[3].set(xlabel="G1", ylabel="G2", title="G1 against G2")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def demo_command(
    name: Annotated[
        str | None,
        typer.Option(
            help="A 2-D demo set instead of the demo volumes (see `fusevis data list`; "
            "--static: default mri-pet)."
        ),
    ] = None,
    static: Annotated[
        bool,
        typer.Option("--static", help="Write figures and a table instead of opening the viewer."),
    ] = False,
    out: Annotated[Path, typer.Option(help="Folder for the --static figures.")] = Path(
        "demo-output"
    ),
    pixel: Annotated[tuple[int, int], typer.Option(help="Fused pixel to explain.")] = (110, 92),
    guidance_model: Annotated[
        str, typer.Option(help="Network whose guidance maps --static computes.")
    ] = "DeepFuse",
    host: Host = "127.0.0.1",
    port: Port = 8765,
    no_browser: NoBrowser = False,
    allow_host: AllowHost = None,
    threads: ViewerThreads = None,
) -> None:
    """Open the viewer on the demo MRI-PET volumes with every shipped network (--static: figures).

    The viewer starts with DeepFuse on the middle axial slice of the demo T1 MRI and
    simulated FDG-PET volumes; move through the slices (slider, axis, PageUp/PageDown),
    switch networks or compare up to four side by side. ``--name`` opens a 2-D demo set
    instead (with the networks trained for its task). ``--static`` writes per-pixel
    Jacobians of one fused pixel for each network, guidance maps of one network for every
    pixel, figures (overview.png, guidance.png) and a table.
    """
    if static:
        use_threads(threads)
        static_demo(name or "mri-pet", out, pixel, guidance_model)
        return
    start_threads(threads)
    from fusevis.viewer.access import host_names
    from fusevis.viewer.data import build_viewer_data
    from fusevis.viewer.server import serve

    host_names(allow_host or [])  # a bad name fails before the models load
    if name is None:
        image_set, volume, start = demo_volumes()
        models = _shipped_models("mri-pet", len(image_set))
        typer.echo(f"loading {', '.join(models)} on the demo MRI-PET volumes ...")
    else:
        from fusevis.io import load_demo

        image_set, volume, start = load_demo(name), None, None
        models = _shipped_models(name, len(image_set))
        typer.echo(f"loading {', '.join(models)} on the {name} demo pair ...")
    data = build_viewer_data(image_set, models, volume=volume, start=start)
    serve(data, host=host, port=port, open_browser=not no_browser, allow_hosts=allow_host or [])


def demo_volumes() -> tuple[ImageSet, VolumeSet, tuple[int, int]]:
    """The demo MRI + FDG-PET volumes, at their middle axial slice: (slice, volumes, key)."""
    from fusevis.io.demo import demo_volume_arrays
    from fusevis.viewer.volume import VolumeSet

    arrays, affine = demo_volume_arrays()
    spacing = tuple(float(abs(affine[i, i])) for i in range(3))
    volume = VolumeSet.from_arrays(
        [arrays["mri"], arrays["pet"]],
        ["demo-mri", "demo-pet"],
        spacing,  # type: ignore[arg-type]
    )
    start = (2, volume.depths[2] // 2)
    return volume.image_set(start), volume, start


def static_demo(name: str, out: Path, pixel: tuple[int, int], guidance_model: str) -> None:
    """The figures-and-table demo (``fusevis demo --static``)."""
    import time

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from fusevis.io import load_demo, save_image
    from fusevis.io.writers import check_writable
    from fusevis.models.inference import as_tensors, minmax
    from fusevis.models.registry import get_model
    from fusevis.saliency import PixelJacobian, cached_maps
    from fusevis.saliency.outputs import forward_selected
    from fusevis.training.evaluate import ssim_scores

    check_writable(out, "folder")
    image_set = load_demo(name)
    tensors = as_tensors(image_set.stack())
    out.mkdir(parents=True, exist_ok=True)
    table = Table(
        "network", "SSIM to 1", "SSIM to 2", f"G1{pixel}", f"G2{pixel}", "field", "ms/pixel"
    )
    rows = []
    for model_name in _shipped_models(name, len(image_set)):
        model = get_model(model_name)
        fused = forward_selected(model, tensors, 0)[0].detach().numpy()
        save_image(minmax(fused), out / f"{model_name}.png")
        jacobian = PixelJacobian(model)
        jacobian.attribute(tensors, pixel=pixel)  # analyses the field once
        start = time.perf_counter()
        found = jacobian.explain(tensors, pixel)
        maps = found.dense()
        elapsed = (time.perf_counter() - start) * 1e3
        window = found.window
        rows.append((model_name, minmax(fused), [(m[0, 0].numpy(), window) for m in maps]))
        scores = ssim_scores(model, image_set)
        field = found.field
        table.add_row(
            model_name,
            f"{scores['ssim_1']:.3f}",
            f"{scores['ssim_2']:.3f}",
            f"{float(maps[0][0, 0, pixel[0], pixel[1]]):+.4f}",
            f"{float(maps[1][0, 0, pixel[0], pixel[1]]):+.4f}",
            f"{field.height}x{field.width}" if field else "whole image",
            f"{elapsed:.1f}",
        )
    _overview(out / "overview.png", [i.data for i in image_set], rows, pixel)
    columns = (
        TextColumn(f"guidance maps of {guidance_model}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} passes"),
        TimeElapsedColumn(),
    )
    with Progress(*columns) as bar:
        task = bar.add_task("guidance", total=None)
        maps = cached_maps(
            get_model(guidance_model),
            tensors,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    _guidance_figure(out / "guidance.png", guidance_model, maps)
    Console().print(table)
    typer.echo(
        f"{maps.method}\nwrote {out / 'overview.png'}, {out / 'guidance.png'} and one "
        f"fused PNG per network in {out}/"
    )
