"""``fusevis view``: the interactive viewer in the browser.

The models and inputs come from the command line only; the page can look at them but
never name other files or models (see :mod:`fusevis.viewer.app`). The module's top
imports nothing heavy, so that ``fusevis --help`` starts fast: torch, the engine and the
web server load when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fusevis.cli.options import (
    Adapt,
    Axis,
    Color,
    DisplayName,
    MaxPixels,
    ModelList,
    Normalize,
    Parts,
    Rule,
    SliceIndex,
    WeightsList,
    use_threads,
)

Host = Annotated[
    str,
    typer.Option(help="Address to listen on (the printed URL carries the access token)."),
]
AllowHost = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-host",
        help="Also answer requests for this host name (repeatable); loopback names and "
        "the --host address always are.",
    ),
]
Port = Annotated[int, typer.Option(help="Port (0: any free port).")]
NoBrowser = Annotated[
    bool, typer.Option("--no-browser", help="Print the URL without opening a browser.")
]
ViewerThreads = Annotated[
    int | None,
    typer.Option(
        "--threads",
        min=1,
        help=(
            "CPU threads for torch. Default: half the cores this process may use (at least "
            "one), since the viewer computes on two threads at once, hovers and maps "
            "(docs/viewer.md)."
        ),
    ),
]


def interactive_threads() -> int:
    """The viewer's default number of torch threads: half the usable cores, at least one.

    The viewer runs two computing threads at once, the hover engine and the map worker,
    and each parallel torch operation spreads over its own team of this many threads; half
    the cores each keeps the two within the machine. On the 2-core development machine
    that is one thread, which made hovers faster while maps were computed (the
    measurement is in docs/viewer.md).
    """
    import os

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 2
    return max(1, cores // 2)


def start_threads(threads: int | None) -> None:
    """Set torch's threads for the viewer: ``threads``, else :func:`interactive_threads`."""
    use_threads(threads if threads is not None else interactive_threads())


def view_command(
    inputs: Annotated[list[Path], typer.Argument(help="Registered input images, input 1 first.")],
    model: ModelList = None,
    weights: WeightsList = None,
    adapt: Adapt = None,
    name: DisplayName = None,
    parts: Parts = None,
    rule: Rule = None,
    host: Host = "127.0.0.1",
    port: Port = 8765,
    no_browser: NoBrowser = False,
    allow_host: AllowHost = None,
    color: Color = None,
    normalize: Normalize = None,
    cache: Annotated[
        Path | None, typer.Option(help="Folder caching guidance maps (default $FUSEVIS_CACHE).")
    ] = None,
    maps: Annotated[
        bool,
        typer.Option(
            "--maps/--no-maps",
            help="Compute guidance maps in the background (--no-maps: per-pixel Jacobians "
            "only). Maps predicted to take over 2 minutes wait for a click in the page.",
        ),
    ] = True,
    max_pixels: MaxPixels = None,
    threads: ViewerThreads = None,
    slice_index: SliceIndex = None,
    axis: Axis = 2,
) -> None:
    """Open the interactive viewer: hover a fused pixel to see its exact saliency maps.

    Volumes (NIfTI, DICOM) open at --slice across --axis (2 axial, 1 coronal, 0 sagittal;
    default the middle axial slice); the page moves through the slices (slider, axis,
    PageUp/PageDown).
    """
    from fusevis.io import load_images
    from fusevis.models.specs import choose_loading, model_specs
    from fusevis.viewer.access import host_names
    from fusevis.viewer.data import build_viewer_data
    from fusevis.viewer.server import serve
    from fusevis.viewer.volume import VolumeSet, all_volumes, parse_axis

    host_names(allow_host or [])  # a bad name fails before the models load
    start_threads(threads)
    # the images are loaded as the models' conventions (--adapt) need, unless told otherwise
    specs = model_specs(model, weights, adapt, name, parts, rule)
    loading = choose_loading(specs, normalize, color)
    volume, start = None, None
    if all_volumes(inputs):
        chosen = parse_axis(axis)
        volume = VolumeSet.read(
            inputs,
            color=loading.color,  # type: ignore[arg-type]
            normalize=loading.normalize,  # type: ignore[arg-type]
            max_pixels=max_pixels,
        )
        index = volume.depths[chosen] // 2 if slice_index is None else slice_index
        start = volume.check((chosen, index))
        image_set = volume.image_set(start)
    else:
        image_set = load_images(
            inputs,
            color=loading.color,  # type: ignore[arg-type]
            normalize=loading.normalize,  # type: ignore[arg-type]
            slice_index=slice_index,
            axis=axis,
            max_pixels=max_pixels,
        )
    data = build_viewer_data(
        image_set,
        model,
        weights,
        cache,
        compute_maps=maps,
        adapt=adapt,
        names=name,
        parts=parts,
        rules=rule,
        volume=volume,
        start=start,
    )
    serve(
        data,
        host=host,
        port=port,
        open_browser=not no_browser,
        allow_hosts=allow_host or [],
    )
