"""``fusevis view``: the interactive viewer in the browser.

The models and inputs come from the command line only; the page can look at them but
never name other files or models (see :mod:`fusevis.viewer.app`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fusevis.io import ImageSet, load_images
from fusevis.models.specs import load_named_models
from fusevis.saliency import MapCache
from fusevis.viewer.access import host_names
from fusevis.viewer.engine import ViewerData
from fusevis.viewer.server import serve

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


def build_viewer_data(
    image_set: ImageSet,
    models: list[str],
    weights: list[str] | None = None,
    cache: Path | None = None,
    compute_maps: bool = True,
) -> ViewerData:
    """Load the named models (with weights matched by position) onto an image set."""
    loaded = load_named_models(models, weights)
    return ViewerData(image_set, loaded, MapCache(cache) if cache else None, compute_maps)


def view_command(
    inputs: Annotated[list[Path], typer.Argument(help="Registered input images, input 1 first.")],
    model: Annotated[
        list[str],
        typer.Option(
            "--model", "-m", help="Network to show; repeat to compare (2-4 side by side)."
        ),
    ],
    weights: Annotated[
        list[str] | None,
        typer.Option("--weights", "-w", help="Weights for the --model in the same position."),
    ] = None,
    host: Host = "127.0.0.1",
    port: Port = 8765,
    no_browser: NoBrowser = False,
    allow_host: AllowHost = None,
    color: Annotated[str, typer.Option(help="gray (the paper) or ycbcr.")] = "gray",
    normalize: Annotated[str, typer.Option(help="minmax, percentile or none.")] = "minmax",
    cache: Annotated[
        Path | None, typer.Option(help="Folder caching guidance maps (default $FUSEVIS_CACHE).")
    ] = None,
    maps: Annotated[
        bool,
        typer.Option(
            "--maps/--no-maps",
            help="Compute guidance maps in the background (--no-maps: per-pixel Jacobians only).",
        ),
    ] = True,
) -> None:
    """Open the interactive viewer: hover a fused pixel to see its exact saliency maps."""
    host_names(allow_host or [])  # a bad name fails before the models load
    image_set = load_images(inputs, color=color, normalize=normalize)  # type: ignore[arg-type]
    data = build_viewer_data(image_set, model, weights, cache, compute_maps=maps)
    serve(
        data,
        host=host,
        port=port,
        open_browser=not no_browser,
        allow_hosts=allow_host or [],
    )
