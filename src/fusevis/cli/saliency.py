"""``fusevis saliency`` and ``fusevis guidance``: per-pixel and all-pixel saliency maps."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fusevis.cli.options import (
    Adapt,
    AllSlices,
    Axis,
    Channel,
    Color,
    Device,
    DisplayName,
    Inputs,
    MaxPixels,
    ModelChoice,
    ModelName,
    Normalize,
    Parts,
    Rule,
    Scheduler,
    Series,
    SliceIndex,
    Threads,
    WeightsPath,
    Workers,
    load_inputs_and_model,
    refuse,
    use_threads,
)
from fusevis.cli.volume3d import is_volume_network
from fusevis.cli.volumes import NAMING, volume_command
from fusevis.errors import FuseVisError, InputError

if TYPE_CHECKING:
    import numpy as np
    import torch

    from fusevis.io import ImageSet
    from fusevis.saliency import SaliencyMaps, Window

# The attribution methods of fusevis.saliency.METHODS, named here so that the command line
# starts without importing torch (tests/cli/test_saliency_cli.py checks the two agree).
METHOD_NAMES = ("jacobian", "gradient", "gradient_x_input", "smoothgrad", "integrated_gradients")


def pick_device(device: str) -> torch.device:
    """Resolve ``auto`` to CUDA when available, else the CPU."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise FuseVisError("CUDA was asked for but is not available")
    return torch.device(device)


def _prepare(
    command: str,
    inputs: list[Path],
    choice: ModelChoice,
    slice_index: int | None,
    axis: int,
    device: str,
    max_pixels: int | None = None,
    series: list[str] | None = None,
) -> tuple[ImageSet, str, torch.nn.Module, list[torch.Tensor]]:
    """The images, the model's display name, the model on its device, the input tensors."""
    from fusevis.models.inference import as_tensors

    image_set, display, network = load_inputs_and_model(
        command, inputs, choice, slice_index, axis, max_pixels, series
    )
    chosen = pick_device(device)
    network = network.to(chosen).eval()
    return image_set, display, network, as_tensors(image_set.stack(), chosen)


def _panels(
    path: Path,
    image_set: ImageSet,
    fused: np.ndarray,
    maps: list[np.ndarray],
    label: str,
    pixel: tuple[int, int] | None = None,
    window: Window | None = None,
) -> None:
    """Inputs and fused image on top, one map per input below (zoomed to ``window``)."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = len(image_set)
    figure, axes = plt.subplots(2, count + 1, figsize=(3.2 * (count + 1), 6.2))
    limit = max(float(np.abs(m).max()) for m in maps) or 1.0
    for k, image in enumerate(image_set):
        axes[0, k].imshow(image.data, cmap="gray")
        axes[0, k].set_title(f"input {k + 1}")
        shown_map, extent = maps[k], None
        if window is not None:
            shown_map = maps[k][window.top : window.bottom, window.left : window.right]
            extent = (window.left - 0.5, window.right - 0.5, window.bottom - 0.5, window.top - 0.5)
        shown = axes[1, k].imshow(shown_map, cmap="RdBu_r", vmin=-limit, vmax=limit, extent=extent)
        axes[1, k].set_title(f"{label} {k + 1}" + (" (field window)" if window else ""))
        figure.colorbar(shown, ax=axes[1, k], fraction=0.046)
    axes[0, count].imshow(fused, cmap="gray")
    axes[0, count].set_title("fused")
    axes[1, count].axis("off")
    for axis in axes[0]:
        axis.set_xticks([])
        axis.set_yticks([])
    for axis in axes.ravel():
        if pixel is not None and axis.images:
            axis.add_patch(
                matplotlib.patches.Rectangle(
                    (pixel[1] - 1.5, pixel[0] - 1.5), 3, 3, fill=False, edgecolor="red"
                )
            )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def saliency_command(
    inputs: Inputs,
    output: Annotated[
        Path, typer.Option("--output", "-o", help=".npz or .png; with --voxel .nii.gz or .npz")
    ],
    pixel: Annotated[tuple[int, int] | None, typer.Option(help="Fused pixel as ROW COL.")] = None,
    voxel: Annotated[
        tuple[int, int, int] | None,
        typer.Option(help="Fused voxel as X Y Z, for a 3-D network (-m Fuse3D) on volumes."),
    ] = None,
    model: ModelName = None,
    weights: WeightsPath = None,
    adapt: Adapt = None,
    name: DisplayName = None,
    parts: Parts = None,
    rule: Rule = None,
    method: Annotated[str, typer.Option(help=", ".join(METHOD_NAMES))] = "jacobian",
    channel: Channel = 0,
    color: Color = None,
    normalize: Normalize = None,
    slice_index: SliceIndex = None,
    axis: Axis = 2,
    device: Device = "auto",
    max_pixels: MaxPixels = None,
    series: Series = None,
    threads: Threads = None,
) -> None:
    """Saliency maps of one fused pixel: each input's Jacobian row (or another method).

    .npz output holds ``fused``, ``jacobian_0``, ``jacobian_1``, ... (or ``attribution_k``
    for other methods) and ``pixel``; .png output shows the panels. With a 3-D network
    (--voxel X Y Z, NIfTI volumes in): OUT.nii.gz (fused) and OUT_jacobian-K.nii.gz per
    input on the inputs' grid, or one .npz.
    """
    choice = ModelChoice(model, weights, adapt, name, parts, rule, color, normalize)
    if voxel is not None or is_volume_network(model):
        from fusevis.cli.volume3d import refuse_3d, saliency_3d

        if voxel is None:
            raise InputError(
                None, f"{model} is a 3-D network: give the fused voxel as --voxel X Y Z"
            )
        if not is_volume_network(model):
            raise InputError(None, "--voxel needs a 3-D network (-m Fuse3D)")
        refuse_3d(choice, slice_index, series, pixel=pixel is not None, method=method != "jacobian")
        use_threads(threads)
        saliency_3d(inputs, voxel, output, model, weights, channel, normalize, device, max_pixels)
        return
    if pixel is None:
        raise InputError(None, "give the fused pixel as --pixel ROW COL")
    if output.suffix not in (".npz", ".png"):
        raise InputError(output, "saliency output must be .npz or .png")
    from fusevis.io.writers import atomic_output, check_writable

    check_writable(output)  # before the work, so that none is lost
    use_threads(threads)
    image_set, display, network, tensors = _prepare(
        "saliency", inputs, choice, slice_index, axis, device, max_pixels, series
    )
    import numpy as np
    import torch

    from fusevis.saliency import METHODS
    from fusevis.saliency.outputs import forward_selected

    if method not in METHODS:
        raise FuseVisError(f"unknown method {method!r}; use {', '.join(METHODS)}")
    found = METHODS[method](network, channel).explain(tensors, pixel=pixel)
    rows, window = found.dense(), found.window
    prefix = "jacobian" if method == "jacobian" else "attribution"
    with torch.no_grad():
        fused = forward_selected(network, tensors, channel)[0].cpu().numpy()
    maps = [r[0].sum(dim=0).cpu().numpy() for r in rows]
    with atomic_output(output) as temporary:
        if output.suffix == ".npz":
            np.savez_compressed(
                temporary,
                fused=fused,
                pixel=np.array(pixel),
                **{f"{prefix}_{k}": r[0].cpu().numpy() for k, r in enumerate(rows)},
            )
        else:
            label = "J" if prefix == "jacobian" else method
            _panels(temporary, image_set, fused, maps, label, pixel, window)
    typer.echo(f"wrote {output} (pixel {pixel[0]}, {pixel[1]}; {method}; {display})")


def _write_maps(
    output: Path, maps: SaliencyMaps, image_set: ImageSet, paper_layout: bool, names: list[str]
) -> list[Path]:
    import numpy as np

    from fusevis.io.writers import atomic_output

    suffix = output.suffix
    arrays: dict[str, np.ndarray] = {"fused": maps.fused}
    for k, guidance in enumerate(maps.guidance):
        arrays[f"guidance_{k}"] = guidance[0] if guidance.shape[0] == 1 else guidance
    for k, influence in enumerate(maps.influence or []):
        arrays[f"influence_{k}"] = influence
        arrays[f"share_{k}"] = maps.share[k]  # type: ignore[index]
    if maps.estimate:  # never saved as exact: the flag, the method and each value's bound
        for k, bound in enumerate(maps.error_bound or []):
            arrays[f"error_bound_{k}"] = bound[0] if bound.shape[0] == 1 else bound
        if suffix == ".npz":
            arrays["estimate"] = np.array(True)
            arrays["method"] = np.array(maps.method)
    if suffix == ".npz":
        with atomic_output(output) as temporary:
            np.savez_compressed(temporary, **arrays)
        return [output]
    if suffix == ".png":
        guidance = [maps.guidance_2d(k) for k in range(len(maps.guidance))]
        with atomic_output(output) as temporary:
            _panels(
                temporary, image_set, maps.fused, guidance, "G estimate" if maps.estimate else "G"
            )
        return [output]
    if suffix == ".zarr":
        import zarr

        with atomic_output(output, "zarr") as temporary:
            group = zarr.open_group(str(temporary), mode="w")
            for name, array in arrays.items():
                group.create_array(name, data=np.ascontiguousarray(array))
            group.attrs["method"] = maps.method
            group.attrs["estimate"] = maps.estimate
        return [output]
    if suffix in (".h5", ".hdf5"):
        import h5py

        if paper_layout:
            written = []
            for k, name in enumerate(names):
                path = output.with_name(f"{output.stem}_{name}.h5")
                with atomic_output(path) as temporary, h5py.File(temporary, "w") as handle:
                    handle.create_dataset(
                        f"Jacob_{name.upper()}_dataset", data=maps.guidance_2d(k).astype(np.float64)
                    )
                    handle.attrs["method"] = maps.method
                    handle.attrs["estimate"] = maps.estimate
                written.append(path)
            return written
        with atomic_output(output) as temporary, h5py.File(temporary, "w") as handle:
            for name, array in arrays.items():
                handle.create_dataset(name, data=array)
            handle.attrs["method"] = maps.method
            handle.attrs["estimate"] = maps.estimate
        return [output]
    raise InputError(output, "guidance output must be .npz, .h5, .zarr or .png")


def guidance_command(
    inputs: Inputs,
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help=".npz, .h5, .zarr or .png; with --all-slices .nii.gz: " + NAMING
        ),
    ],
    model: ModelName = None,
    weights: WeightsPath = None,
    adapt: Adapt = None,
    name: DisplayName = None,
    parts: Parts = None,
    rule: Rule = None,
    influence: Annotated[
        bool, typer.Option(help="Also compute influence maps and shares (more passes).")
    ] = False,
    paper_layout: Annotated[
        bool,
        typer.Option(
            help="With .h5: one file per input, OUT_<name>.h5, key "
            "Jacob_<NAME>_dataset, as the FuseVis paper published them."
        ),
    ] = False,
    names: Annotated[str, typer.Option(help="Input names for --paper-layout.")] = "mri,pet",
    channel: Channel = 0,
    tile: Annotated[int, typer.Option(help="Tile size bounding memory.")] = 512,
    cache: Annotated[bool, typer.Option(help="Reuse/store results in $FUSEVIS_CACHE.")] = True,
    color: Color = None,
    normalize: Normalize = None,
    slice_index: SliceIndex = None,
    axis: Axis = 2,
    device: Device = "auto",
    max_pixels: MaxPixels = None,
    series: Series = None,
    threads: Threads = None,
    estimate: Annotated[
        bool,
        typer.Option(
            help="For a network that is not local and has no low-rank form: estimate the "
            "guidance maps (a few hundred backward passes, a per-pixel error bound checked "
            "at sampled pixels) instead of one backward pass per pixel. Saved marked as an "
            "estimate, with the bounds."
        ),
    ] = False,
    all_slices: AllSlices = False,
    workers: Workers = 2,
    scheduler: Scheduler = None,
) -> None:
    """Guidance maps (the Jacobian's diagonal) of every fused pixel, exactly.

    Writes ``fused``, ``guidance_0``, ``guidance_1``, ... and with --influence
    ``influence_k`` and ``share_k``; with --estimate (only where the maps cannot be exact
    fast) ``error_bound_k`` and the estimate flag. Interrupted runs resume from the cache.

    With --all-slices (NIfTI volumes): every slice along --axis, each as a 2-D run of that
    slice would compute it (normalised per slice), on Dask; the results are NIfTI volumes
    on the inputs' grid (RAS+ affine, their units). Slices where an input is constant are
    zeros.
    """
    choice = ModelChoice(model, weights, adapt, name, parts, rule, color, normalize)
    if is_volume_network(model):
        from fusevis.cli.volume3d import guidance_3d, refuse_3d

        refuse_3d(
            choice,
            slice_index,
            series,
            all_slices=all_slices,
            paper_layout=paper_layout,
            estimate=estimate,
        )
        use_threads(threads)
        guidance_3d(
            inputs, output, model, weights, influence, channel, tile, normalize, device, max_pixels
        )
        return
    if all_slices:
        refuse(
            "--all-slices",
            slice=slice_index is not None,
            paper_layout=paper_layout,
            estimate=estimate,
            series=bool(series),
        )
        volume_command(
            "guidance",
            inputs,
            output,
            choice,
            axis,
            device,
            max_pixels,
            workers,
            scheduler,
            threads,
            influence=influence,
            channel=channel,
            tile=tile,
        )
        return
    if output.suffix not in (".npz", ".h5", ".hdf5", ".zarr", ".png"):
        raise InputError(output, "guidance output must be .npz, .h5, .zarr or .png")
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from fusevis.io.writers import check_writable
    from fusevis.saliency import cached_maps
    from fusevis.saliency.maps import compute_maps

    check_writable(output, "zarr" if output.suffix == ".zarr" else "file")  # before the work
    use_threads(threads)
    image_set, display, network, tensors = _prepare(
        "guidance", inputs, choice, slice_index, axis, device, max_pixels, series
    )
    name_list = [n for n in names.split(",") if n]
    if paper_layout and len(name_list) != len(image_set):
        raise FuseVisError(f"--names gives {len(name_list)} names for {len(image_set)} inputs")
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} passes"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns) as bar:
        task = bar.add_task("guidance" + (" + influence" if influence else ""), total=None)

        def report(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        options = {"output_channel": channel, "tile": tile, "progress": report}
        if estimate:
            options["estimate"] = True
        if cache:
            maps = cached_maps(network, tensors, influence=influence, **options)
        else:
            maps = compute_maps(network, tensors, influence=influence, **options)
    written = _write_maps(output, maps, image_set, paper_layout, name_list)
    typer.echo(f"{display}: {maps.method}\nwrote " + ", ".join(str(p) for p in written))
