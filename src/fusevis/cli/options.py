"""Options shared by the commands that read input images and name models.

This module is imported whenever ``fusevis`` starts (``fusevis --help`` included), so it
imports nothing heavy at its top: no NumPy, no torch, not even :mod:`fusevis.io` (whose
package imports NumPy). The two constants of :mod:`fusevis.io.limits` the help text needs
are repeated here; ``tests/cli/test_options.py`` checks that they agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fusevis.errors import InputError

if TYPE_CHECKING:
    from torch import nn

    from fusevis.io import ImageSet
    from fusevis.metrics import MetricConvention
    from fusevis.models.adapter import Loading
    from fusevis.models.specs import ModelSpec

DEFAULT_MAX_PIXELS = 1 << 26
""":data:`fusevis.io.limits.DEFAULT_MAX_PIXELS`, repeated for a light start."""
MAX_PIXELS_ENV = "FUSEVIS_MAX_PIXELS"
""":data:`fusevis.io.limits.MAX_PIXELS_ENV`, repeated for a light start."""
RULE_NAMES = ("mean", "sum", "max", "l1-norm", "l1-softmax")
""":data:`fusevis.models.parts.RULES`, repeated for a light start."""

Inputs = Annotated[list[Path], typer.Argument(help="Registered input images, input 1 first.")]
ModelName = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Registered name, package.module:Name or file.py:Name (or use --parts).",
    ),
]
ModelList = Annotated[
    list[str] | None,
    typer.Option(
        "--model",
        "-m",
        help="Network to compare (registered name, package.module:Name or file.py:Name); "
        "repeat for several.",
    ),
]
WeightsList = Annotated[
    list[str] | None,
    typer.Option(
        "--weights",
        "-w",
        help="Weights for the model in the same position (FILE, FILE#key or part=FILE,part=FILE).",
    ),
]
Adapt = Annotated[
    list[str] | None,
    typer.Option(
        "--adapt",
        help=(
            'Conventions of the model in the same position, "KEY=VALUE;KEY=VALUE": '
            "inputs=separate|concat|list|keywords:a,b; channels=3; scale=unit|minmax|x/255; "
            "mean_std=signed|imagenet|M/S; color=ycbcr; chroma=first|weighted|K; "
            "output=INDEX|KEY; output_channel=K|mean; post=clamp,signed,minmax; name=NAME "
            '(docs/bring-your-network.md). "" keeps the defaults.'
        ),
    ),
]
DisplayName = Annotated[
    list[str] | None,
    typer.Option("--name", help="Display name of the model in the same position (titles, output)."),
]
Parts = Annotated[
    list[str] | None,
    typer.Option(
        "--parts",
        help=(
            "A model assembled from parts, encoder=SPEC,decoder=SPEC (SPEC: a registered "
            "name, package.module:Name, file.py:Name or file.py:Name.method); its --weights "
            "(part=FILE,...), --adapt and --name come after those of the --model ones."
        ),
    ),
]
Rule = Annotated[
    list[str] | None,
    typer.Option(
        "--rule",
        help=(
            f"Fusion rule of the --parts in the same position: {', '.join(RULE_NAMES)}, or "
            "a SPEC naming a module class or a function rule(*features)."
        ),
    ),
]
WeightsPath = Annotated[
    str | None,
    typer.Option(
        "--weights",
        "-w",
        help=(
            "Weights file: .safetensors, .pth/.pt state dict or pickled module (read without "
            "running code); FILE#key picks a nested dict; part=FILE,part=FILE loads each "
            "file into that sub-module. Default: the shipped pretrained ones."
        ),
    ),
]
Color = Annotated[
    str | None,
    typer.Option(
        help="gray: luminance (the paper); ycbcr: fuse Y, keep colour. Default: what the "
        "model's --adapt needs, else gray."
    ),
]
Normalize = Annotated[
    str | None,
    typer.Option(
        help="minmax (the paper), percentile or none. Default: what the model's --adapt "
        "scale needs (x/255: none), else minmax."
    ),
]
SliceIndex = Annotated[
    int | None, typer.Option("--slice", help="Slice of volume inputs (default: middle).")
]
Axis = Annotated[int, typer.Option(help="Axis to slice volume inputs along.")]
MaxPixels = Annotated[
    int | None,
    typer.Option(
        "--max-pixels",
        min=1,
        help=(
            "Largest image (pixels) or volume (voxels) an input may announce; checked from "
            f"the file's header before decoding. Default: ${MAX_PIXELS_ENV}, else "
            f"{DEFAULT_MAX_PIXELS}."
        ),
    ),
]
Series = Annotated[
    list[str] | None,
    typer.Option(
        "--series",
        help=(
            "DICOM folder holding several series: the one to read, by its number in the "
            "listing, its UID or the UID's end; repeat to choose one per input."
        ),
    ),
]
Device = Annotated[str, typer.Option(help="auto (CUDA when available), cpu or cuda.")]
Threads = Annotated[
    int | None,
    typer.Option(
        "--threads",
        min=1,
        help=(
            "CPU threads for torch (default: torch's own, one per core). On a busy machine one "
            "thread is often much faster than several."
        ),
    ),
]


Workers = Annotated[int, typer.Option(help="Worker processes of the local Dask cluster.")]
Scheduler = Annotated[
    str | None, typer.Option(help="tcp://HOST:PORT of an existing Dask scheduler.")
]
AllSlices = Annotated[
    bool,
    typer.Option(
        "--all-slices",
        help="Every slice of NIfTI volume inputs along --axis, on Dask (--workers, "
        "--scheduler), resumable; writes NIfTI volumes on the inputs' grid (docs/volumes.md).",
    ),
]


def use_threads(threads: int | None) -> None:
    """Limit torch's intra-op threads to ``threads`` (None: leave torch's default)."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def read_inputs(
    inputs: list[Path],
    color: str | None,
    normalize: str | None,
    slice_index: int | None,
    axis: int,
    max_pixels: int | None = None,
    series: list[str] | None = None,
) -> ImageSet:
    """Load the command's input images with the shared options (None: the defaults)."""
    from fusevis.io import load_images

    return load_images(
        inputs,
        color=color or "gray",  # type: ignore[arg-type]
        normalize=normalize or "minmax",  # type: ignore[arg-type]
        slice_index=slice_index,
        axis=axis,
        max_pixels=max_pixels,
        series=series or None,
    )


Channel = Annotated[int, typer.Option(help="Output channel to explain.")]


def refuse(context: str, **given: bool) -> None:
    """Refuse, in one line, options that mean nothing with ``context`` (``given`` True).

    ``refuse("--all-slices", paper_layout=True)`` raises ``--paper-layout cannot be used
    with --all-slices``; the first option given, in the order named, is the one reported.
    """
    for option, used in given.items():
        if used:
            flag = "--" + option.replace("_", "-")
            raise InputError(None, f"{flag} cannot be used with {context}")


@dataclass(frozen=True)
class ModelChoice:
    """A single-model command's model options and how its images load (None: the defaults).

    One value carries ``--model``, ``--weights``, ``--adapt``, ``--name``, ``--parts``,
    ``--rule``, ``--color`` and ``--normalize`` from a command to whichever path runs it:
    one image (:func:`load_inputs_and_model`) or every slice of volumes
    (:func:`fusevis.cli.volumes.volume_command`).
    """

    model: str | None
    weights: str | None = None
    adapt: Sequence[str] | None = None
    name: Sequence[str] | None = None
    parts: Sequence[str] | None = None
    rule: Sequence[str] | None = None
    color: str | None = None
    normalize: str | None = None

    def spec(self, command: str) -> ModelSpec:
        """The one model of ``command`` (``--model`` or ``--parts``), as a spec."""
        from fusevis.models.specs import model_specs

        if self.model is None and not self.parts:
            raise InputError(None, f"{command} needs a --model (or --parts with --rule)")
        specs = model_specs(
            [self.model] if self.model is not None else [],
            [self.weights] if self.weights is not None else None,
            self.adapt,
            self.name,
            self.parts,
            self.rule,
        )
        if len(specs) != 1:
            raise InputError(None, f"{command} takes one model: a --model or one --parts, not both")
        return specs[0]

    def resolve(self, command: str) -> tuple[ModelSpec, Loading]:
        """The model's spec and how its images load; checked before anything heavy loads.

        ``--normalize``/``--color``, where given, must suit the model's conventions
        (:func:`fusevis.models.specs.choose_loading`).
        """
        from fusevis.models.specs import choose_loading

        spec = self.spec(command)
        return spec, choose_loading([spec], self.normalize, self.color)


def load_inputs_and_model(
    command: str,
    inputs: list[Path],
    choice: ModelChoice,
    slice_index: int | None,
    axis: int,
    max_pixels: int | None = None,
    series: list[str] | None = None,
) -> tuple[ImageSet, str, nn.Module]:
    """A single-model command's images and model: ``(images, display name, model)``.

    The options are checked before anything heavy loads; the images load as the model's
    conventions need (unless ``--normalize``/``--color`` say otherwise, which must then
    suit them); the model is built for ``len(inputs)`` images.
    """
    from fusevis.models.inference import check_input_count
    from fusevis.models.specs import build_model, check_loaded, name_models

    spec, loading = choice.resolve(command)
    image_set = read_inputs(
        inputs, loading.color, loading.normalize, slice_index, axis, max_pixels, series
    )
    ((display, network),) = name_models([(spec, build_model(spec, len(image_set)))]).items()
    check_input_count(network, len(image_set))
    check_loaded({display: network}, image_set.images)
    return image_set, display, network


CONVENTION_NAMES = ("fusevis", "cddfuse", "vifb")
"""The names of :data:`fusevis.metrics.CONVENTIONS`, repeated for a light start
(``tests/cli/test_metrics_command.py`` checks them)."""

MetricConventionOption = Annotated[
    str,
    typer.Option(
        "--convention",
        "-c",
        help=(
            f"Whose way to compute the metrics: {', '.join(CONVENTION_NAMES)} "
            "(the choices of each: docs/metrics.md)."
        ),
    ),
]


def metric_convention(name: str) -> MetricConvention:
    """The :class:`~fusevis.metrics.MetricConvention` named by ``--convention``.

    Raises
    ------
    InputError
        For an unknown name, naming the option and the known ones.
    """
    from fusevis.metrics import get_convention

    try:
        return get_convention(name)
    except InputError as error:
        raise InputError("--convention", error.problem) from None
