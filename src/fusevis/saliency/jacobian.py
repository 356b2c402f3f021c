"""Exact per-pixel Jacobians: rows of the fusion network's Jacobian, fast enough to hover."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from typing import ClassVar

import torch
from torch import nn

from fusevis.errors import InputError, ModelError
from fusevis.models.inference import check_output, run_model
from fusevis.saliency.cone import Cone, ConeUnsupported, cone_of
from fusevis.saliency.convolution import BACKENDS, backends_to_time, convolve_with
from fusevis.saliency.explanation import Explanation
from fusevis.saliency.field import ReceptiveField
from fusevis.saliency.inputs import Pixel, as_input_tuple, check_pixel, image_shape
from fusevis.saliency.locality import Locality, analyse_locality
from fusevis.saliency.lowrank import LowRank, LowRankStrategy, NoStructure
from fusevis.saliency.outputs import OutputChannel
from fusevis.saliency.precision import without_tf32
from fusevis.saliency.recorded import DEFAULT_RECORD_LIMIT, ForwardRecord, record_forward
from fusevis.saliency.strategies import (
    NAMES,
    ConeStrategy,
    CropStrategy,
    FullStrategy,
    RecordedStrategy,
    Strategy,
)
from fusevis.saliency.switches import flushed_denormals, frozen_parameters

STRATEGIES = ("auto", *NAMES)


class PixelJacobian:
    """Per-pixel saliency maps J_k(p) = ∂F(p)/∂x_k for a fused pixel p, Captum-style.

    Every result equals the full-image gradient exactly; what differs is the cost. The
    rows are computed by one of five strategies (:mod:`fusevis.saliency.strategies`):
    ``"recorded"`` (a backward sweep over the pixel's dependency cone from the record
    :meth:`prepare` makes), ``"cone"`` (forward and backward over the cone), ``"crop"``
    (the model on a receptive-field crop), ``"lowrank"`` (a model that is not local but
    couples pixels only through a few global quantities: the row of the network with them
    held fixed plus a low-rank term, :mod:`fusevis.saliency.lowrank`) or ``"full"``
    (full-image gradients, one backward pass per pixel over a kept forward: any model).
    ``strategy="auto"`` takes the cone where the graph allows it — timing the first pixel
    with and without the record, and with oneDNN and im2col convolutions, and keeping the
    fastest — the crop for other local models, the low-rank form where a model that is not
    local has it, the full image otherwise.

    An instance keeps the model's analysis, the record and a kept full-image forward
    between calls; use it from one thread at a time.

    Parameters
    ----------
    model : torch.nn.Module
        Called as ``model(x1, ..., xN)`` on (B, C, H, W) tensors; N ≥ 1.
    output_channel : int or "luminance"
        Which output channel is explained (default 0); ``"luminance"`` for RGB outputs.
    receptive_field : ReceptiveField, optional
        Override the traced or measured field.
    verify : bool
        Check crop results against full-image gradients once per input size (float64).
    record_limit : int
        Bytes :meth:`prepare` may keep (ReLU sign patterns, inputs of other element-wise
        operations); above it, pixels are computed without a record.
    strategy : {"auto", "recorded", "cone", "crop", "lowrank", "full"}
        How rows are computed. A named strategy the model does not allow raises
        :class:`~fusevis.errors.ModelError` when a pixel is asked for; ``"recorded"``
        records the inputs itself when :meth:`prepare` has not.
    convolutions : {"auto", "onednn", "im2col"}
        The CPU convolution backend of the cone and recorded strategies: timed
        (``"auto"``), PyTorch's own dispatch, or its im2col kernels. Chosen per call,
        without touching ``torch.backends.mkldnn`` (:mod:`fusevis.saliency.convolution`).

    Examples
    --------
    >>> pj = PixelJacobian(model)                         # doctest: +SKIP
    >>> j_mri, j_pet = pj.attribute((mri, pet), pixel=(120, 64))  # doctest: +SKIP
    >>> result = pj.explain((mri, pet), pixel=(120, 64))  # doctest: +SKIP
    >>> result.strategy, result.window, result.cropped()  # doctest: +SKIP
    """

    name: ClassVar[str] = "jacobian"

    def __init__(
        self,
        model: nn.Module,
        output_channel: OutputChannel = 0,
        receptive_field: ReceptiveField | None = None,
        verify: bool = True,
        record_limit: int = DEFAULT_RECORD_LIMIT,
        strategy: str = "auto",
        convolutions: str = "auto",
    ) -> None:
        if strategy not in STRATEGIES:
            raise InputError(None, f"unknown strategy {strategy!r}; use {', '.join(STRATEGIES)}")
        if convolutions not in ("auto", *BACKENDS):
            raise InputError(
                None, f"unknown convolutions {convolutions!r}; use auto, {', '.join(BACKENDS)}"
            )
        self.model = model
        self.output_channel = output_channel
        self.override = receptive_field
        self.verify = verify
        self.record_limit = record_limit
        self.strategy = strategy
        self.convolutions = convolutions
        self._parameters = list(model.parameters())
        self._localities: dict[tuple, Locality] = {}
        self._cone: Cone | None = None
        self._cone_problem: str | None = None  # why the cone cannot run the model
        self._record: ForwardRecord | None = None
        self._full = FullStrategy(model, output_channel)
        self._lowrank: LowRank | None = None  # made for the first model found not local
        # the fastest (strategy, convolutions) found by timing, per dtype, device and choice
        self._fastest: dict[tuple, tuple[str, str]] = {}

    # -- analysis and preparation ---------------------------------------------------------

    def locality(self, inputs: torch.Tensor | Sequence[torch.Tensor]) -> Locality:
        """The (cached) analysis of the model for inputs of this size: local or not, field."""
        items = as_input_tuple(inputs)
        key = tuple((tuple(x.shape), x.dtype, x.device.type) for x in items)
        if key not in self._localities:
            self._localities[key] = analyse_locality(
                self.model, items, self.output_channel, self.override, self.verify
            )
        return self._localities[key]

    def prepare(self, inputs: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """Run the model once over the whole image and keep what later pixels need.

        After this, every pixel of these inputs (same tensors, unmodified) costs a backward
        sweep over its cone only, about half of a forward and backward over it. The record
        holds one byte per ReLU activation (a 48-channel ReLU at 1024² is 48 MB), the
        derivative maps of other element-wise operations (a number, one pixel or one byte
        per value where they allow) and the few values other layers need
        (:mod:`~fusevis.saliency.sweeps`); above ``record_limit`` bytes, for models
        the cone does not cover, for strategies other than ``"auto"`` and ``"recorded"``,
        or when the first pixel shows that the cone's own forward and backward are faster
        for this model, nothing is kept.

        Returns
        -------
        torch.Tensor
            The model's (1, C, H, W) output for the inputs.
        """
        items = as_input_tuple(inputs)
        locality = self.locality(items)
        if not locality.local:
            return self._prepare_not_local(items)
        with frozen_parameters(self.model, self._parameters), flushed_denormals():
            self._record = None
            if locality.local and self.strategy in ("auto", "recorded"):
                cone = self._cone_for(items)
                if cone is not None:
                    self._record = record_forward(cone, items, self.record_limit)
            if self._record is not None:
                check_output(self.model, self._record.output, items[0])
                return self._record.output
            with torch.no_grad():
                return run_model(self.model, list(items))

    def _prepare_not_local(self, items: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The low-rank decomposition of these inputs, or the kept full-image forward."""
        with (
            frozen_parameters(self.model, self._parameters),
            flushed_denormals(),
            torch.enable_grad(),
        ):
            self._record = None
            if self.strategy in ("auto", "lowrank"):
                found = self._lowrank_strategy(items)
                if isinstance(found, LowRankStrategy):
                    return found.lowrank.prepared(items)[2].full_output
            return self._full.keep(items)

    def _lowrank_strategy(self, items: tuple[torch.Tensor, ...]) -> LowRankStrategy | str:
        """The low-rank strategy prepared for these inputs, or why there is none."""
        if self._lowrank is None:
            self._lowrank = LowRank(self.model, self.output_channel, self.verify)
        try:
            self._lowrank.prepared(items)
        except NoStructure as problem:
            return str(problem)
        return LowRankStrategy(self._lowrank)

    def sibling(self) -> PixelJacobian:
        """A copy for other inputs of the same size (a volume's slice).

        It shares the model's analysis (fields, cone, the fastest strategy found), not the
        record or the kept forward of these inputs: each prepares its own.
        """
        twin = copy.copy(self)
        twin._record = None
        twin._full = FullStrategy(self.model, self.output_channel)
        return twin

    @property
    def record_bytes(self) -> int:
        """Bytes the record made by :meth:`prepare` holds (0 when none is kept)."""
        return 0 if self._record is None else self._record.nbytes

    # -- rows -------------------------------------------------------------------------------

    @without_tf32
    def explain(self, inputs: torch.Tensor | Sequence[torch.Tensor], pixel: Pixel) -> Explanation:
        """Jacobian rows of one fused pixel for every input, with how they were computed.

        Parameters
        ----------
        inputs : tensor or sequence of tensors
            The N inputs, each (1, C, H, W) (or (C, H, W) / (H, W)).
        pixel : (row, col)
            The fused pixel.

        Returns
        -------
        Explanation
            The rows (per input, over the window they can be non-zero in), the window, the
            strategy used and the receptive field.
        """
        return self.explain_pixels(inputs, [pixel])[0]

    def explain_pixels(
        self, inputs: torch.Tensor | Sequence[torch.Tensor], pixels: Sequence[Pixel]
    ) -> list[Explanation]:
        """:meth:`explain` for several pixels at once (the crop strategy batches them)."""
        items = as_input_tuple(inputs)
        shape = image_shape(items)
        chosen = [check_pixel(p, shape) for p in pixels]
        if not chosen:
            raise InputError(None, "no pixel given")
        locality = self.locality(items)
        with (
            frozen_parameters(self.model, self._parameters),
            flushed_denormals(),
            torch.enable_grad(),
        ):
            strategy = self._choose(items, locality, chosen[0])
            found = strategy.rows(items, chosen)
        channels = tuple(int(x.shape[1]) for x in items)
        dtype, device = items[0].dtype, items[0].device
        return [
            Explanation(
                tuple(parts),
                window,
                strategy.name,
                locality.field,
                shape,
                channels,
                dtype,
                device,
                pixel,
            )  # fmt: skip
            for (window, parts), pixel in zip(found, chosen, strict=True)
        ]

    @without_tf32
    def attribute(
        self,
        inputs: torch.Tensor | Sequence[torch.Tensor],
        pixel: Pixel | None = None,
        pixels: Sequence[Pixel] | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """Jacobian rows of one fused pixel (or a batch of pixels) for every input.

        Parameters
        ----------
        inputs : tensor or sequence of tensors
            The N inputs, each (1, C, H, W) (or (C, H, W) / (H, W)).
        pixel : (row, col), optional
            One fused pixel; the result is shaped like each input, zero outside the field.
        pixels : sequence of (row, col), optional
            Several pixels; each result gets a leading axis of length len(pixels).

        Returns
        -------
        tuple of torch.Tensor
            One tensor per input.
        """
        if (pixel is None) == (pixels is None):
            raise TypeError("give exactly one of pixel= or pixels=")
        if pixel is not None:
            return self.explain(inputs, pixel).dense()
        maps = [found.dense() for found in self.explain_pixels(inputs, pixels)]
        return tuple(torch.cat([m[k] for m in maps]) for k in range(len(maps[0])))

    # -- choosing ---------------------------------------------------------------------------

    def _cone_for(self, items: tuple[torch.Tensor, ...]) -> Cone | None:
        """The cone of the model's graph, if it runs the model at these inputs' size."""
        if self._cone is None and self._cone_problem is None:
            try:
                self._cone = cone_of(self.model, len(items))
            except ConeUnsupported as problem:
                self._cone_problem = str(problem) or "unsupported"
        if self._cone is None:
            return None
        try:
            self._cone.geometry(items)  # made once per size
        except ConeUnsupported as problem:
            self._cone_problem = str(problem) or "unsupported"
            return None
        return self._cone

    def _choose(
        self, items: tuple[torch.Tensor, ...], locality: Locality, pixel: Pixel
    ) -> Strategy:
        """The strategy for these inputs: the one named, or the fastest that applies."""
        name, channel = self.strategy, self.output_channel
        if name == "lowrank" and locality.local:
            raise ModelError("strategy 'lowrank' is for models that are not local; this one is")
        if not locality.local and name in ("auto", "lowrank"):
            found = self._lowrank_strategy(items)
            if isinstance(found, LowRankStrategy):
                return found
            if name == "lowrank":
                raise ModelError(f"strategy 'lowrank' cannot run this model: {found}")
        if not locality.local or name == "full":
            if name not in ("auto", "full"):
                raise ModelError(f"strategy {name!r} needs a local model; {locality.how}")
            return self._full
        if name == "crop":
            return CropStrategy(self.model, locality.field, channel)
        cone = self._cone_for(items)
        if cone is None:
            if name == "auto":
                return CropStrategy(self.model, locality.field, channel)
            raise ModelError(f"strategy {name!r} cannot run this model: {self._cone_problem}")
        record = self._record
        if record is not None and not record.made_from(items):
            record = None
        if name == "recorded" and record is None:
            with torch.no_grad():
                record = self._record = record_forward(cone, items, self.record_limit)
            if record is None:
                raise ModelError(
                    f"strategy 'recorded': the record would exceed {self.record_limit} bytes"
                )
        if name == "recorded":
            kinds: tuple[str, ...] = ("recorded",)
        elif name == "cone" or record is None:
            kinds = ("cone",)
        else:
            kinds = ("recorded", "cone")
        backends = (
            backends_to_time(items[0].dtype, items[0].device)
            if self.convolutions == "auto"
            else (self.convolutions,)
        )

        def make(kind: str, backend: str) -> Strategy:
            conv = convolve_with(backend)
            if kind == "recorded":
                return RecordedStrategy(cone, record, locality.field, channel, conv)
            return ConeStrategy(cone, locality.field, channel, conv)

        ways = [(kind, backend) for kind in kinds for backend in backends]
        key = (items[0].dtype, items[0].device.type, tuple(ways))
        if key not in self._fastest:
            self._fastest[key] = ways[0] if len(ways) == 1 else self._time(ways, make, items, pixel)
        kind, backend = self._fastest[key]
        if kind == "cone" and record is not None:
            self._record = None  # slower than the cone: free its memory
        return make(kind, backend)

    @staticmethod
    def _time(
        ways: list[tuple[str, str]],
        make: Callable[[str, str], Strategy],
        items: tuple[torch.Tensor, ...],
        pixel: Pixel,
    ) -> tuple[str, str]:
        """The fastest way for one pixel: each computed three times, the first warms up.

        A way that raises is left out (the error of the first is raised if all do).

        Every way gives the same gradients up to float rounding; which is fastest depends
        on the layers and the CPU (a backward sweep from the record skips the cone's
        forward, but differentiating element-wise layers from stored values has overheads
        of its own; oneDNN is not always faster on small windows).
        """
        best: dict[tuple[str, str], float] = {}
        failed: dict[tuple[str, str], Exception] = {}
        for way in ways * 3:
            if way in failed:
                continue
            strategy = make(*way)
            start = time.perf_counter()
            try:
                strategy.rows(items, [pixel])
            except Exception as error:  # noqa: BLE001 - a way that fails is not taken
                failed[way] = error
                continue
            elapsed = time.perf_counter() - start
            best[way] = min(best.get(way, elapsed), elapsed)
        if not best:
            raise next(iter(failed.values()))
        return min(best, key=best.__getitem__)
