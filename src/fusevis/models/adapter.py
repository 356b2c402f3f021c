"""Conventions without wrappers: a user's fusion network under FuseVis's contract.

FuseVis calls a fusion model as ``model(x_1, ..., x_N)`` with N grey images of shape
(1, 1, H, W), as they were loaded, and expects one image (1, C, H, W) back. Networks from
public repositories have their own conventions: both images as one 2-channel tensor, grey
replicated to 3 channels, the 8-bit values divided by 255, a [-1, 1] range, a tuple or a
dict of outputs, an output that must be clamped or min-max scaled. :class:`Adapter` wraps
such a network and declares its conventions (a :class:`Conventions`), so that no
hand-written wrapper is needed.

Every step of the adapter is a differentiable torch operation inside ``forward`` (no
detach, no NumPy, nothing in place on the inputs), so the Jacobians FuseVis reports are
taken with respect to the images the user loaded, through the adapter. The steps are
written with operations the saliency engine's tracer knows (channel concatenation, scalar
arithmetic, a channel slice, ``amin``/``amax`` over the image axes for the global min-max,
which is not local); the adapter traces with ``torch.fx`` for a known number of inputs.

Input scaling and the loader
----------------------------
``scale`` says how the network's [0, 1] image is obtained from the file, and therefore
which normalisation FuseVis must load with (see :meth:`Conventions.loading`):

============  ================================  =========================================
``scale``     the network expects               load with (``normalize``, ``color``)
============  ================================  =========================================
``unit``      the loaded image as it is         anything (FuseVis's default: ``minmax``)
``minmax``    each image min-max scaled         ``minmax``; the adapter adds no operation
``x/255``     the file's 8-bit values / 255     ``none``: the adapter divides by 255
                                                (``ycbcr``: the loader already divided by
                                                the file type's maximum; nothing added)
============  ================================  =========================================

Min-max of the loaded image is not x/255 (they differ by up to 0.32 on an infrared
image). ``mean_std`` then maps that [0, 1] image as torchvision's ``Normalize`` does,
``(x - mean) / std`` per channel: ``"signed"`` is mean 0.5, std 0.5, that is 2x - 1.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.fx
from torch import nn

from fusevis.errors import InputError, ModelError
from fusevis.io.color import recolor
from fusevis.io.image import Image
from fusevis.models.arity import with_inputs

__all__ = [
    "CHROMA",
    "INPUTS",
    "MEAN_STD_PRESETS",
    "POST",
    "Adapter",
    "Conventions",
    "Loading",
    "adapt",
    "display_name",
    "fuse_chroma",
]

INPUTS = ("separate", "concat", "list")
"""How the inputs reach the network: ``model(*xs)``, ``model(cat(xs, 1))``, ``model(xs)``."""

POST = ("clamp", "signed", "minmax")
"""Output steps: clamp to [0, 1]; (y + 1) / 2 from [-1, 1]; global min-max (not local)."""

CHROMA = ("first", "weighted")
"""Where the fused colour comes from (besides an input number, 1-based)."""

MEAN_STD_PRESETS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "signed": ((0.5,), (0.5,)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
"""Named ``mean_std`` values: ``signed`` gives 2x - 1; ``imagenet`` is torchvision's."""

MINMAX_EPS = 1e-12
"""The smallest range the output min-max divides by (a constant output gives zeros)."""

_DIVIDE = re.compile(r"^x\s*/\s*([0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)$")
_FIELDS = (
    "inputs",
    "channels",
    "scale",
    "mean_std",
    "color",
    "chroma",
    "output",
    "output_channel",
    "post",
    "name",
)


def _one_line(text: object, limit: int = 80) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _floats(text: str, what: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise ModelError(
            f"{what} {_one_line(text)!r} is not a comma-separated list of numbers"
        ) from None
    return values


@dataclass(frozen=True)
class Loading:
    """What the loader must do for an adapter's scale (None: the user's choice).

    Attributes
    ----------
    normalize : {"minmax", "none"} or None
        The loader's intensity normalisation (:func:`fusevis.io.normalize.normalize`).
    color : {"gray", "ycbcr"} or None
        The loader's colour mode (:func:`fusevis.io.load_images`).
    """

    normalize: str | None = None
    color: str | None = None


@dataclass(frozen=True)
class Conventions:
    """A fusion network's conventions, declared instead of written as a wrapper.

    Attributes
    ----------
    inputs : {"separate", "concat", "list"} or tuple of str
        ``"separate"``: ``model(x_1, ..., x_N)``; ``"concat"``: ``model(x)`` with the
        inputs concatenated along the channels, (1, N·channels, H, W); ``"list"``:
        ``model([x_1, ..., x_N])``; a tuple of names: ``model(name_1=x_1, ...)``.
    channels : int
        Channels per input: 3 replicates each grey image to 3 identical channels
        (``x.repeat(1, 3, 1, 1)`` in the repositories), written as a channel concatenation.
    scale : str
        ``"unit"``, ``"minmax"`` or ``"x/D"`` (``"x/255"``): how the network's [0, 1] image
        comes from the file; see the module's table for the loader each one needs.
    mean_std : tuple of (mean, std) sequences, or a preset name, or None
        ``(x - mean) / std`` per channel after the scale (one value for all channels, or
        one per channel); presets ``"signed"`` (2x - 1) and ``"imagenet"``.
    color : {None, "ycbcr"}
        ``"ycbcr"``: the network fuses the Y channel of colour inputs (the loader's
        ``color="ycbcr"``); the fused Y is recoloured with chroma chosen by ``chroma``.
    chroma : {"first", "weighted"} or int
        With ``color="ycbcr"``: the Cb/Cr of the first colour input, of input k (1-based),
        or of every colour input weighted by saturation |C - 0.5| (DeepFuse's rule).
    output : int, str or None
        The output to take when the network returns a tuple/list (an index) or a dict (a
        key); None (and only None) for a network that returns one tensor.
    output_channel : int, "mean" or None
        Keep only this channel of the output (0-based), their mean, or all (None).
    post : tuple of {"clamp", "signed", "minmax"}
        Output steps in order: clamp to [0, 1]; (y + 1) / 2 (inverse of [-1, 1]); global
        min-max over the image per channel. ``"minmax"`` couples every pixel, so the model
        is then not local.
    name : str or None
        The model's display name (the viewer's panel titles, reports); default: the
        network's class name.
    """

    inputs: str | tuple[str, ...] = "separate"
    channels: int = 1
    scale: str = "unit"
    mean_std: tuple[tuple[float, ...], tuple[float, ...]] | str | None = None
    color: str | None = None
    chroma: str | int = "first"
    output: int | str | None = None
    output_channel: int | str | None = None
    post: tuple[str, ...] | str = ()
    name: str | None = None

    def __post_init__(self) -> None:
        inputs = self.inputs
        if isinstance(inputs, str):
            if inputs not in INPUTS:
                raise ModelError(
                    f"inputs {_one_line(inputs)!r} is not one of {', '.join(INPUTS)} "
                    "(or a tuple of keyword names)"
                )
        else:
            names = tuple(inputs)
            if not names or not all(isinstance(n, str) and n.isidentifier() for n in names):
                raise ModelError(f"inputs {_one_line(names)!r} must be keyword names")
            if len(set(names)) != len(names):
                raise ModelError(f"inputs {_one_line(names)!r} names an input twice")
            object.__setattr__(self, "inputs", names)
        if isinstance(self.channels, bool) or not isinstance(self.channels, int):
            raise ModelError(f"channels must be a whole number, not {_one_line(self.channels)!r}")
        if not 1 <= self.channels <= 64:
            raise ModelError(f"channels must lie in 1..64, not {self.channels}")
        if not isinstance(self.scale, str) or (
            self.scale not in ("unit", "minmax") and _DIVIDE.match(self.scale) is None
        ):
            raise ModelError(
                f"scale {_one_line(self.scale)!r} is not unit, minmax or x/D (such as x/255)"
            )
        if self.scale.startswith("x") and not (math.isfinite(self.divisor) and self.divisor > 0):
            raise ModelError(f"scale {self.scale!r} divides by {self.divisor:g}")
        object.__setattr__(self, "mean_std", self._checked_mean_std(self.mean_std))
        if self.color not in (None, "ycbcr"):
            raise ModelError(f"color {_one_line(self.color)!r} is not ycbcr (or None)")
        chroma = self.chroma
        if isinstance(chroma, bool) or not (
            chroma in CHROMA or (isinstance(chroma, int) and chroma >= 1)
        ):
            raise ModelError(
                f"chroma {_one_line(chroma)!r} is not first, weighted or an input number "
                "(1, 2, ...)"
            )
        output = self.output
        if output is not None and (isinstance(output, bool) or not isinstance(output, int | str)):
            raise ModelError(f"output {_one_line(output)!r} must be an index or a key")
        channel = self.output_channel
        if channel is not None and (
            isinstance(channel, bool)
            or not (channel == "mean" or (isinstance(channel, int) and channel >= 0))
        ):
            raise ModelError(
                f"output_channel {_one_line(channel)!r} is not a channel number (0, 1, ...) or mean"
            )
        steps = (self.post,) if isinstance(self.post, str) else tuple(self.post)
        for step in steps:
            if step not in POST:
                raise ModelError(f"post step {_one_line(step)!r} is not one of {', '.join(POST)}")
        object.__setattr__(self, "post", steps)
        if self.name is not None and (not isinstance(self.name, str) or not self.name.strip()):
            raise ModelError(f"name {_one_line(self.name)!r} must be a non-empty string")

    def _checked_mean_std(
        self, value: object
    ) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        if value is None:
            return None
        if isinstance(value, str):
            if value not in MEAN_STD_PRESETS:
                raise ModelError(
                    f"mean_std {_one_line(value)!r} is not {', '.join(MEAN_STD_PRESETS)} "
                    "or (mean, std)"
                )
            value = MEAN_STD_PRESETS[value]
        try:
            mean, std = value  # type: ignore[misc]
            mean = (float(mean),) if isinstance(mean, int | float) else tuple(map(float, mean))
            std = (float(std),) if isinstance(std, int | float) else tuple(map(float, std))
        except (TypeError, ValueError):
            raise ModelError(
                f"mean_std {_one_line(value)!r} must be (mean, std), each a number or one "
                "number per channel"
            ) from None
        for values in (mean, std):
            if len(values) not in (1, self.channels):
                raise ModelError(
                    f"mean_std gives {len(values)} values for {self.channels} channel(s)"
                )
            if not all(math.isfinite(v) for v in values):
                raise ModelError("mean_std values must be finite")
        if not all(v > 0 for v in std):
            raise ModelError(f"mean_std: every std must be positive, got {std}")
        return mean, std

    # -- parsing -------------------------------------------------------------------------

    @classmethod
    def parse(cls, options: Mapping[str, object]) -> Conventions:
        """Build conventions from strings, as a command line gives them.

        Keys are the field names (``-`` may stand for ``_``); values are strings (or
        already typed values): ``inputs="concat"`` or ``"keywords:ir,vis"``,
        ``channels="3"``, ``scale="x/255"``, ``mean_std="signed"`` / ``"imagenet"`` /
        ``"0.5/0.5"`` / ``"0.485,0.456,0.406/0.229,0.224,0.225"``, ``color="ycbcr"``,
        ``chroma="first"`` / ``"2"`` / ``"weighted"``, ``output="0"`` or ``"fused"``,
        ``output_channel="0"`` / ``"mean"``, ``post="signed,clamp"``, ``name="..."``.
        Empty values and ``"none"`` leave a field at its default.

        Raises
        ------
        ModelError
            For an unknown key or a value that does not parse (one line).
        """
        fields: dict[str, Any] = {}
        for raw_key, raw_value in options.items():
            key = str(raw_key).strip().replace("-", "_")
            if key not in _FIELDS:
                raise ModelError(
                    f"unknown convention {_one_line(raw_key)!r} (known: {', '.join(_FIELDS)})"
                )
            if key in fields:
                raise ModelError(f"convention {key!r} given twice")
            if not isinstance(raw_value, str):
                fields[key] = raw_value
                continue
            value = raw_value.strip()
            if key != "name" and value.lower() in ("", "none", "default"):
                continue
            fields[key] = _parse_value(key, value)
        return cls(**fields)

    @classmethod
    def from_pairs(cls, pairs: Iterable[str]) -> Conventions:
        """Build conventions from ``KEY=VALUE`` strings (a repeatable command-line option)."""
        options: dict[str, str] = {}
        for pair in pairs:
            key, sep, value = str(pair).partition("=")
            if not sep or not key.strip():
                raise ModelError(f"convention {_one_line(pair)!r} should read KEY=VALUE")
            name = key.strip().replace("-", "_")
            if name in options:
                raise ModelError(f"convention {name!r} given twice")
            options[name] = value
        return cls.parse(options)

    @classmethod
    def from_text(cls, text: str) -> Conventions:
        """Build conventions from ``"KEY=VALUE;KEY=VALUE"`` (one command-line value)."""
        return cls.from_pairs(part for part in str(text).split(";") if part.strip())

    # -- what follows from the conventions ------------------------------------------------

    @property
    def divisor(self) -> float:
        """D for ``scale="x/D"`` (1 for the other scales)."""
        found = _DIVIDE.match(self.scale)
        return float(found.group(1)) if found else 1.0

    @property
    def applied_divisor(self) -> float:
        """What the adapter divides the loaded image by (1: nothing).

        ``x/D`` with ``color="ycbcr"`` divides by nothing: the loader's YCbCr mode already
        divided the file by its type's maximum (255 for 8-bit files).
        """
        return 1.0 if self.color == "ycbcr" else self.divisor

    @property
    def is_local(self) -> bool:
        """False when an adapter step couples every pixel (the output's global min-max)."""
        return "minmax" not in self.post

    def loading(self) -> Loading:
        """The loader options these conventions need (None where any will do)."""
        color = "ycbcr" if self.color == "ycbcr" else None
        if self.scale == "minmax":
            return Loading("minmax", color)
        if self.scale != "unit":
            return Loading("none", color or "gray")
        return Loading(None, color)

    def check_loading(self, normalize: str, color: str) -> None:
        """Raise :class:`ModelError` if images loaded this way do not suit the network."""
        wanted = self.loading()
        if wanted.normalize is not None and normalize != wanted.normalize:
            raise ModelError(
                f"scale {self.scale} needs the images loaded with normalize "
                f"{wanted.normalize}, not {normalize}"
            )
        if wanted.color is not None and color != wanted.color:
            raise ModelError(
                f"{'color ycbcr' if self.color else 'scale ' + self.scale} needs the images "
                f"loaded with color {wanted.color}, not {color}"
            )

    def check_values(self, images: Sequence[object], sources: Sequence[str] | None = None) -> None:
        """Check loaded images (arrays or tensors) against the scale; one-line errors.

        ``x/D`` (grey loading) expects the file's own values: within [0, D], and above 1
        somewhere (an image within [0, 1] was almost surely min-max scaled). ``minmax``
        expects each image to span exactly [0, 1].

        Raises
        ------
        InputError
            Naming the image (``sources``) and the values found.
        """
        for index, image in enumerate(images):
            source = sources[index] if sources is not None else f"input {index + 1}"
            values = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else image
            values = np.asarray(values, dtype=np.float64)
            low, high = float(values.min()), float(values.max())
            if self.scale == "minmax":
                if abs(low) > 1e-6 or abs(high - 1.0) > 1e-6:
                    raise InputError(
                        source,
                        f"values lie in [{low:.4g}, {high:.4g}]; scale minmax expects each "
                        "image min-max scaled to [0, 1] (load with normalize minmax)",
                    )
            elif self.scale != "unit":
                top = 1.0 if self.color == "ycbcr" else self.divisor
                if low < 0.0 or high > top * (1 + 1e-6):
                    raise InputError(
                        source,
                        f"values lie in [{low:.4g}, {high:.4g}], outside [0, {top:g}] that "
                        f"scale {self.scale} expects",
                    )
                if top > 1.0 and high <= 1.0:
                    raise InputError(
                        source,
                        f"values lie in [{low:.4g}, {high:.4g}]; scale {self.scale} expects "
                        "the file's own values (load with normalize none, not minmax)",
                    )

    def describe(self) -> str:
        """The conventions that differ from the defaults, on one line (``"defaults"``)."""
        default = Conventions()
        parts = []
        for field in _FIELDS:
            value = getattr(self, field)
            if field == "name" or value == getattr(default, field):
                continue
            if field == "mean_std":
                value = "/".join(",".join(f"{v:g}" for v in part) for part in value)
            elif isinstance(value, tuple):
                value = ",".join(value)
            parts.append(f"{field}={value}")
        return " ".join(parts) or "defaults"


def _parse_value(key: str, value: str) -> object:
    if key == "inputs":
        if value.startswith("keywords:"):
            return tuple(part.strip() for part in value[len("keywords:") :].split(","))
        return value
    if key == "channels":
        try:
            return int(value)
        except ValueError:
            raise ModelError(f"channels {_one_line(value)!r} is not a whole number") from None
    if key == "mean_std":
        if value in MEAN_STD_PRESETS:
            return value
        mean, sep, std = value.partition("/")
        if not sep:
            raise ModelError(
                f"mean_std {_one_line(value)!r} should read MEAN/STD (such as 0.5/0.5), "
                f"or {' or '.join(MEAN_STD_PRESETS)}"
            )
        return (_floats(mean, "mean"), _floats(std, "std"))
    if key == "color":
        return value.lower()
    if key in ("chroma", "output", "output_channel"):
        return int(value) if re.fullmatch(r"[0-9]+", value) else value
    if key == "post":
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def display_name(model: nn.Module) -> str:
    """A model's display name: its ``display_name`` if it has one, else its class name."""
    name = getattr(model, "display_name", None)
    return name if isinstance(name, str) and name else type(model).__name__


class Adapter(nn.Module):
    """A fusion network wrapped so that FuseVis sees its usual contract.

    Called as ``adapter(x_1, ..., x_N)`` with N loaded grey images (1, 1, H, W); returns
    the network's fused image (1, C, H, W) after the declared output steps.

    Parameters
    ----------
    model : torch.nn.Module
        The user's network, weights already loaded (load into it, not into the adapter).
    conventions : Conventions, optional
        Its conventions; keyword arguments (the fields of :class:`Conventions`) may be
        given instead or on top.
    num_inputs : int, optional
        How many images it fuses: ``model.num_inputs`` if the model says, else 2. Fixed so
        that the adapter traces with ``torch.fx`` (its ``forward`` names
        ``input_1, ..., input_N``).
    **fields
        Fields of :class:`Conventions` (``inputs="concat"``, ``channels=3``, ...).

    Raises
    ------
    ModelError
        For a convention that does not parse or does not fit (one line).
    """

    def __init__(
        self,
        model: nn.Module,
        conventions: Conventions | None = None,
        *,
        num_inputs: int | None = None,
        **fields: Any,
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise ModelError(f"an adapter wraps a torch.nn.Module, not {type(model).__name__}")
        conventions = conventions if conventions is not None else Conventions()
        if fields:
            unknown = sorted(set(fields) - set(_FIELDS))
            if unknown:
                raise ModelError(f"unknown convention {unknown[0]!r} (known: {', '.join(_FIELDS)})")
            conventions = dataclasses.replace(conventions, **fields)
        count = num_inputs if num_inputs is not None else getattr(model, "num_inputs", None)
        count = 2 if count is None else count
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ModelError(f"num_inputs must be a whole number ≥ 1, not {_one_line(count)!r}")
        if isinstance(conventions.inputs, tuple) and len(conventions.inputs) != count:
            raise ModelError(f"inputs names {len(conventions.inputs)} keywords for {count} inputs")
        self.model = model
        self.conventions = conventions
        self.num_inputs = count
        self.display_name = conventions.name or display_name(model)
        self.divide = conventions.applied_divisor
        channels = conventions.channels
        if conventions.mean_std is None:
            self.channel_maps: tuple[tuple[float, float], ...] = ((0.0, 1.0),) * channels
        else:
            mean, std = conventions.mean_std
            self.channel_maps = tuple(
                zip(mean * (channels // len(mean)), std * (channels // len(std)), strict=True)
            )
        self.__class__ = with_inputs(type(self), count)

    def extra_repr(self) -> str:  # noqa: D102
        described = self.conventions.describe()
        return f"name={self.display_name!r}, num_inputs={self.num_inputs}, {described}"

    # -- the steps -----------------------------------------------------------------------

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """One loaded image as the network expects it: scale, channels, mean/std.

        The grey image becomes ``channels`` channels, channel c being (x - mean_c) / std_c,
        made with scalar arithmetic and one channel concatenation (no buffers: exact in
        every dtype, nothing added to the state dict).
        """
        if self.divide != 1.0:
            x = x / self.divide
        made: dict[tuple[float, float], torch.Tensor] = {}
        planes = []
        for mean, std in self.channel_maps:
            if (mean, std) not in made:
                made[(mean, std)] = x if (mean, std) == (0.0, 1.0) else (x - mean) / std
            planes.append(made[(mean, std)])
        return planes[0] if len(planes) == 1 else torch.cat(planes, dim=1)

    def call(self, inputs: list[torch.Tensor]) -> Any:
        """Call the network with the prepared inputs in its own convention."""
        how = self.conventions.inputs
        if how == "separate":
            return self.model(*inputs)
        if how == "concat":
            return self.model(torch.cat(inputs, dim=1))
        if how == "list":
            return self.model(list(inputs))
        return self.model(**dict(zip(how, inputs, strict=True)))

    def pick(self, output: Any) -> torch.Tensor:
        """The fused image among the network's outputs."""
        key = self.conventions.output
        if isinstance(output, Mapping):
            if key is None or key not in output:
                keys = ", ".join(repr(k) for k in list(output)[:8])
                wanted = "choose one with output=KEY" if key is None else f"no key {key!r}"
                raise ModelError(f"{self.display_name} returns a dict ({keys}); {wanted}")
            return output[key]
        if isinstance(output, tuple | list):
            if not isinstance(key, int) or isinstance(key, bool):
                raise ModelError(
                    f"{self.display_name} returns a {type(output).__name__} of "
                    f"{len(output)}; choose one with output=INDEX"
                )
            if not -len(output) <= key < len(output):
                raise ModelError(
                    f"{self.display_name} returns {len(output)} outputs; output={key} "
                    "is not one of them"
                )
            return output[key]
        if key is not None and isinstance(output, torch.fx.Proxy):
            return output[key]  # traced: an operation that returns several outputs
        if key is not None:
            raise ModelError(
                f"{self.display_name} returns one tensor; leave output unset (not {key!r})"
            )
        return output

    def finish(self, y: torch.Tensor) -> torch.Tensor:
        """Output channel and post-processing steps, in the declared order."""
        conventions = self.conventions
        if isinstance(y, torch.Tensor) and y.dim() != 4:  # a Proxy while tracing: no check
            raise ModelError(
                f"{self.display_name} returned shape {tuple(y.shape)}; expected (B, C, H, W)"
            )
        channel = conventions.output_channel
        if channel == "mean":
            y = y.mean(dim=1, keepdim=True)
        elif channel is not None:
            if isinstance(y, torch.Tensor) and channel >= y.shape[1]:
                raise ModelError(
                    f"{self.display_name} returns {y.shape[1]} channel(s); "
                    f"output_channel={channel} is not one of them"
                )
            y = y[:, channel : channel + 1]
        for step in conventions.post:
            if step == "clamp":
                y = torch.clamp(y, 0.0, 1.0)
            elif step == "signed":
                y = (y + 1.0) * 0.5
            else:  # minmax: global over the image axes, per channel (not local)
                low = y.amin(dim=(2, 3), keepdim=True)
                high = y.amax(dim=(2, 3), keepdim=True)
                y = (y - low) / torch.clamp(high - low, min=MINMAX_EPS)
        return y

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Fuse N loaded images (1, 1, H, W) through the network's conventions."""
        if len(inputs) != self.num_inputs:
            raise ModelError(
                f"{self.display_name} fuses {self.num_inputs} inputs, got {len(inputs)}"
            )
        return self.finish(self.pick(self.call([self.prepare(x) for x in inputs])))

    # -- colour --------------------------------------------------------------------------

    def recolor(self, fused_y: np.ndarray, images: Sequence[Image]) -> np.ndarray | None:
        """The fused image in colour, or None for grey conventions or grey inputs.

        Parameters
        ----------
        fused_y : numpy.ndarray
            (H, W) fused luminance in [0, 1] (scale it first if the network's is not).
        images : sequence of Image
            The loaded inputs (their ``chroma`` planes, from ``color="ycbcr"`` loading).

        Returns
        -------
        numpy.ndarray or None
            (H, W, 3) RGB in [0, 1].
        """
        if self.conventions.color != "ycbcr":
            return None
        chroma = fuse_chroma(images, self.conventions.chroma)
        return None if chroma is None else recolor(fused_y, chroma)


def fuse_chroma(images: Sequence[Image], choice: str | int = "first") -> np.ndarray | None:
    """The Cb/Cr planes (2, H, W) for a fused image, from the inputs' chroma.

    ``"first"``: the first colour input's (None when every input is grey); an input
    number k (1-based): input k's; ``"weighted"``: every colour input's, weighted per pixel
    by its saturation, C = Σ_k C_k |C_k - 0.5| / Σ_k |C_k - 0.5| (0.5 where all are
    neutral), the chroma rule of DeepFuse.

    Raises
    ------
    InputError
        If input k does not exist or is grey.
    """
    if isinstance(choice, int) and not isinstance(choice, bool):
        if not 1 <= choice <= len(images):
            raise InputError(None, f"chroma {choice}: there are {len(images)} inputs")
        image = images[choice - 1]
        if image.chroma is None:
            raise InputError(
                image.source, f"chroma {choice}: this input has no colour (load with ycbcr)"
            )
        return image.chroma
    colour = [image.chroma for image in images if image.chroma is not None]
    if not colour:
        return None
    if choice == "first":
        return colour[0]
    if choice != "weighted":
        raise ModelError(f"chroma {_one_line(choice)!r} is not first, weighted or an input number")
    planes = np.stack([np.asarray(c, dtype=np.float64) for c in colour])
    weight = np.abs(planes - 0.5)
    total = weight.sum(axis=0)
    safe = np.where(total > 0, total, 1.0)
    fused = np.where(total > 0, (planes * weight).sum(axis=0) / safe, 0.5)
    return fused.astype(np.float32)


def adapt(
    model: nn.Module,
    conventions: Conventions | Mapping[str, object] | None = None,
    *,
    num_inputs: int | None = None,
    **fields: Any,
) -> Adapter:
    """Wrap ``model`` in an :class:`Adapter` for its conventions.

    ``conventions`` may be a :class:`Conventions`, or a mapping of strings as a command
    line gives them (:meth:`Conventions.parse`); keyword arguments are fields of
    :class:`Conventions`.
    """
    if isinstance(conventions, Mapping):
        conventions = Conventions.parse(conventions)
    return Adapter(model, conventions, num_inputs=num_inputs, **fields)
