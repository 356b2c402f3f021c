"""``fusevis saliency`` and ``fusevis guidance`` with a 3-D network on whole volumes.

A registered network of task ``volume`` (``Fuse3D``) fuses NIfTI volumes whole: the
saliency command explains one fused voxel (``--voxel X Y Z``), the guidance command every
voxel (:mod:`fusevis.saliency.volumetric`). Results are NIfTI volumes on the inputs' RAS+
grid (:func:`fusevis.io.volumes.save_volume`) or one .npz.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from fusevis.cli.options import ModelChoice, refuse
from fusevis.errors import InputError

if TYPE_CHECKING:
    import numpy as np
    import torch

    from fusevis.io.readers import RawArray

OUTPUTS = (".npz", ".nii", ".nii.gz")


def is_volume_network(model: str | None) -> bool:
    """Whether ``model`` names a registered network meant for volumes (task ``volume``)."""
    if not model or ":" in model:
        return False
    from fusevis.errors import ModelError
    from fusevis.models.registry import get_entry

    try:
        return get_entry(model).task == "volume"
    except ModelError:
        return False


def refuse_3d(
    choice: ModelChoice, slice_index: int | None, series: Sequence[str] | None, **given: bool
) -> None:
    """Refuse, in one line, options that mean nothing for a 3-D network.

    First the command's own (``given`` True), then the model options other than
    ``--model``, ``--weights`` and ``--normalize``, ``--slice`` and ``--series``.
    """
    refuse(
        "a 3-D network",
        **given,
        adapt=bool(choice.adapt),
        name=bool(choice.name),
        parts=bool(choice.parts),
        rule=bool(choice.rule),
        slice=slice_index is not None,
        series=bool(series),
        color=choice.color is not None,
    )


def _check_output(output: Path) -> str:
    from fusevis.io.readers import suffix_of

    suffix = suffix_of(output)
    if suffix not in OUTPUTS:
        raise InputError(output, "a 3-D network's output must be .nii.gz, .nii or .npz")
    return suffix


def _load(
    inputs: Sequence[Path],
    model: str,
    weights: str | None,
    normalize: str | None,
    device: str,
    max_pixels: int | None,
) -> tuple[list[RawArray], torch.nn.Module, list[torch.Tensor]]:
    """The NIfTI volumes (RAS+, one grid), the network on its device, the scaled tensors."""
    import torch

    from fusevis.analysis.volume_run import read_volumes
    from fusevis.cli.saliency import pick_device
    from fusevis.io.volumes import scaled_volumes
    from fusevis.models.registry import get_model

    sources, volumes = read_volumes(inputs, max_pixels)
    chosen = pick_device(device)
    network = get_model(model, weights or "DEFAULT").to(chosen).eval()
    scaled = scaled_volumes(volumes, sources, normalize or "minmax")
    tensors = [torch.from_numpy(array).to(chosen) for array in scaled]
    return volumes, network, tensors


def _write(output: Path, suffix: str, arrays: dict[str, np.ndarray], like: RawArray) -> list[Path]:
    """One .npz of all arrays, or one NIfTI volume per array (``fused`` as OUT itself)."""
    import numpy as np

    from fusevis.io.volumes import nifti_base, save_volume
    from fusevis.io.writers import atomic_output

    if suffix == ".npz":
        with atomic_output(output) as temporary:
            np.savez_compressed(temporary, **arrays)
        return [output]
    base, ending = nifti_base(output)
    written = []
    for key, array in arrays.items():
        if array.ndim != 3:
            continue
        name, _, index = key.rpartition("_")
        label = key if not index.isdigit() else f"{name}-{int(index) + 1}"
        path = output if key == "fused" else base.with_name(f"{base.name}_{label}{ending}")
        written.append(save_volume(array, path, like))
    return written


def saliency_3d(
    inputs: Sequence[Path],
    voxel: tuple[int, int, int],
    output: Path,
    model: str,
    weights: str | None,
    channel: int,
    normalize: str | None,
    device: str,
    max_pixels: int | None,
) -> None:
    """Write the Jacobian rows of one fused voxel (``jacobian_k``, NIfTI ``OUT_jacobian-K``)."""
    from fusevis.io.writers import check_writable

    suffix = _check_output(output)
    check_writable(output)
    volumes, network, tensors = _load(inputs, model, weights, normalize, device, max_pixels)
    import numpy as np

    from fusevis.saliency.volumetric import VoxelJacobian, run_volume_model

    jac = VoxelJacobian(network, tensors, output_channel=channel)
    rows = jac.row(voxel)
    import torch

    with torch.no_grad():
        fused = run_volume_model(network, jac.inputs, channel)[0].cpu().numpy()
    arrays = {"fused": fused, **{f"jacobian_{k}": r for k, r in enumerate(rows)}}
    if suffix == ".npz":
        arrays["voxel"] = np.array(voxel)
    written = _write(output, suffix, arrays, volumes[0])
    size = "x".join(str(s) for s in jac.field.size)
    typer.echo(
        f"{model}: voxel {', '.join(str(v) for v in voxel)} on a {size} crop\nwrote "
        + ", ".join(str(p) for p in written)
    )


def guidance_3d(
    inputs: Sequence[Path],
    output: Path,
    model: str,
    weights: str | None,
    influence: bool,
    channel: int,
    tile: int,
    normalize: str | None,
    device: str,
    max_pixels: int | None,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Write the fused volume, guidance volumes and with ``influence`` the shares."""
    from fusevis.io.writers import check_writable

    suffix = _check_output(output)
    check_writable(output)
    volumes, network, tensors = _load(inputs, model, weights, normalize, device, max_pixels)
    from fusevis.saliency.volumetric import volume_maps

    maps = volume_maps(
        network,
        tensors,
        influence=influence,
        output_channel=channel,
        tile=tile,
        progress=progress,
    )
    arrays = {"fused": maps.fused}
    for k, guidance in enumerate(maps.guidance):
        arrays[f"guidance_{k}"] = guidance.sum(axis=0)
    for k, share in enumerate(maps.share or []):
        arrays[f"share_{k}"] = share
        if suffix == ".npz":
            arrays[f"influence_{k}"] = maps.influence[k]  # type: ignore[index]
    written = _write(output, suffix, arrays, volumes[0])
    typer.echo(f"{model}: {maps.method}\nwrote " + ", ".join(str(p) for p in written))
