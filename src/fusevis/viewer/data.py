"""What a viewer shows: one image set, its models, the hover engine and the map scheduler.

:class:`ViewerData` only holds the parts together: the per-pixel work is
:class:`~fusevis.viewer.hover.HoverEngine`'s (one thread), the maps are
:class:`~fusevis.viewer.scheduler.MapScheduler`'s (another thread, stepping aside while
the user hovers). :func:`build_viewer_data` loads models named as on the command line.

For a volume (:class:`~fusevis.viewer.volume.VolumeSet`) every slice is a
:class:`~fusevis.viewer.slices.SliceView`, opened on the engine thread when a page shows it
(:meth:`ViewerData.open_view`: the fused slice and each model's prepared Jacobian) or
before (:meth:`ViewerData.prefetch`: the neighbouring slices), and kept in a bounded
:class:`~fusevis.viewer.slices.SliceCache`. While the page is idle (taking turns with
the map scheduler), :meth:`ViewerData.sweep` computes the fused slices of the whole axis in
view, nearest first, into a bounded :class:`~fusevis.viewer.slices.FusedSlices`: a jump to
one of them paints at once and its hovers take the cone (no record is made for it).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from fusevis.io import ImageSet
from fusevis.models.inference import as_tensors, minmax
from fusevis.models.specs import check_loaded, load_named_models
from fusevis.saliency import MapCache
from fusevis.saliency.graph import TraceFailure, graph_of
from fusevis.viewer.hover import HoverEngine, ModelSession
from fusevis.viewer.scheduler import ASK_ABOVE_S, MapScheduler
from fusevis.viewer.slices import DEFAULT_BUDGET_BYTES, FusedSlices, SliceCache, SliceView
from fusevis.viewer.state import ViewerState
from fusevis.viewer.volume import BlankSlice, SliceKey, VolumeSet
from fusevis.viewer.volume3d import VolumeNetworks, VolumeSession, split_models
from fusevis.viewer.volume3d_maps import VolumeMapScheduler


class ViewerData:
    """An image set and the models to compare on it, with their two workers.

    Parameters
    ----------
    image_set : ImageSet
        The registered inputs (as the models take them).
    models : dict of str to nn.Module
        The networks to show, by display name (2-4 can be compared side by side).
    cache : MapCache, optional
        Where guidance and influence maps are cached (default: $FUSEVIS_CACHE).
    compute_maps : bool
        Start the guidance maps of the models in view by themselves (False: only when the
        page asks, per-pixel Jacobians only).
    ask_above_s : float
        Maps predicted to take longer than this many seconds wait for the user's go.
    volume : VolumeSet, optional
        The volumes ``image_set`` is a slice of: pages can then move through their slices.
    start : (int, int), optional
        ``(axis, index)`` of the slice ``image_set`` is (with ``volume``).
    slice_budget_bytes : int
        Memory the slices kept open may hold together (least recently used out first).

    Attributes
    ----------
    hover : HoverEngine
        The per-pixel engine (its ``sessions`` hold each model's fused image and field).
    maps : MapScheduler
        The background map jobs.
    """

    def __init__(
        self,
        image_set: ImageSet,
        models: dict[str, nn.Module],
        cache: MapCache | None = None,
        compute_maps: bool = True,
        ask_above_s: float = ASK_ABOVE_S,
        *,
        volume: VolumeSet | None = None,
        start: SliceKey | None = None,
        slice_budget_bytes: int = DEFAULT_BUDGET_BYTES,
    ) -> None:
        if (volume is None) != (start is None):
            raise ValueError("a volume needs the start slice it was opened at, and only then")
        self.image_set = image_set
        self.tensors = as_tensors(image_set.stack())
        self.inputs = [minmax(x[0, 0].numpy()) for x in self.tensors]
        self.compute_maps = compute_maps
        deep = split_models(models, volume)  # 3-D networks: run on the whole volumes
        self.deep = VolumeNetworks(volume, deep) if deep and volume is not None else None
        opened = {}
        if self.deep is not None and start is not None:
            opened = {name: self.deep.open_on(name, start) for name in deep}
        self.hover = HoverEngine(self.tensors, models, opened)
        self.shape = self.hover.shape
        self.maps = MapScheduler(
            self.tensors,
            {name: s.model for name, s in self.hover.sessions.items() if name not in deep},
            cache,
            busy=self.hover.busy,
            prior=self.predicted_seconds,
            ask_above_s=ask_above_s,
            prepare=self._trace_on_engine,
        )
        if self.deep is not None:  # 3-D networks: guidance volumes, shown a slice at a time
            wrapped = VolumeMapScheduler(self.maps, self.deep, self.hover.busy)
            self.maps = wrapped  # type: ignore[assignment]
        self.volume = volume
        self.start = volume.check(start) if volume is not None and start is not None else None
        self.base = SliceView(self.start, image_set, self.hover.tensors, self.inputs)
        self.base.sessions = self.hover.sessions
        self.slices = SliceCache(slice_budget_bytes)
        self.fused_slices = FusedSlices()
        self._swept: set[tuple[int, tuple[str, ...]]] = set()  # (axis, models) swept through
        self._blank: set[SliceKey] = set()  # slices the sweep leaves (blank or failing)
        self._shown: dict[int, int] = {}  # per axis, the slice last opened for a page
        self._direction: dict[int, int] = {}  # per axis, +1 or -1: the way pages last moved
        if volume is not None:
            self.slices.put(self.base)
            self.maps.show(self.start, self.base.tensors)

    def _trace_on_engine(self, model: nn.Module) -> None:
        """Trace a map job's model on the engine thread (see :class:`MapScheduler`)."""
        self.hover.submit(_trace, model, len(self.tensors)).result()

    def new_state(self) -> ViewerState:
        """The state a new page starts in (at the start slice of a volume)."""
        if self.volume is None or self.start is None:
            return ViewerState(self.shape, self.names)
        shapes = tuple(self.volume.slice_shape(axis) for axis in range(3))
        axis, index = self.start
        return ViewerState(
            self.shape, self.names, depths=self.volume.depths, slice_shapes=shapes,
            axis=axis, index=index,
        )  # fmt: skip

    # -- slices (engine thread) ------------------------------------------------------------
    def cached_view(self, key: Hashable) -> SliceView | None:
        """The view of slice ``key`` if it is open (the 2-D set's for None)."""
        return self.base if key is None or self.volume is None else self.slices.peek(key)

    def open_view(self, key: Hashable, names: Sequence[str], shown: bool = True) -> SliceView:
        """The view of slice ``key`` with ``names`` opened on it; engine thread.

        ``shown``: a page shows it (not a prefetch), which tells the way pages move.

        Raises
        ------
        BlankSlice
            The slice is constant in some input.
        """
        if key is None or self.volume is None:
            return self.base
        if shown:
            last = self._shown.get(key[0])
            if last is not None and abs(key[1] - last) == 1:  # a step (a jump says nothing)
                self._direction[key[0]] = key[1] - last
            self._shown[key[0]] = key[1]
        view = self.slices.get(key)
        if view is None:
            image_set = self.volume.image_set(self.volume.check(key))  # BlankSlice
            tensors = tuple(as_tensors(image_set.stack()))
            inputs = [minmax(x[0, 0].numpy()) for x in tensors]
            view = SliceView(key, image_set, tensors, inputs)
        for name in names:
            if name not in view.sessions and self._is_deep(name):
                view.sessions[name] = self.deep.open_on(name, key)  # type: ignore[arg-type]
            elif name not in view.sessions:
                swept = self.fused_slices.get((key, name))
                if swept is None:
                    view.sessions[name] = self.hover.open_on(name, view.tensors)
                    self.fused_slices.put((key, name), view.sessions[name].fused)
                else:
                    view.sessions[name] = self.hover.open_fused(name, swept)
        self.slices.put(view)
        return view

    def prefetch(self, key: Hashable, names: Sequence[str], superseded: Callable[[], bool]) -> int:
        """Open the slices beside ``key`` (fused slices; non-local models prepared); engine thread.

        Stops as soon as ``superseded()`` (the page wants something). Returns the number
        of (slice, model) pairs opened.
        """
        if key is None or self.volume is None:
            return 0
        axis, index = key
        opened = 0
        shown = self.slices.peek(key)
        for name in names if shown is not None else ():  # the slice in view's forwards first
            if superseded():
                return opened
            session = shown.sessions.get(name)
            if isinstance(session, ModelSession) and self.hover.complete(session, shown.tensors):
                opened += 1
        ahead = self._direction.get(axis, 1)  # the way the page last moved first
        for step in (ahead, -ahead):
            neighbour = (axis, index + step)
            if not 0 <= neighbour[1] < self.volume.depths[axis]:
                continue
            for name in names:
                if superseded():
                    return opened
                held = self.slices.peek(neighbour)
                if held is not None and name in held.sessions:
                    continue
                try:
                    self.open_view(neighbour, [name], shown=False)
                except BlankSlice:
                    break
                opened += 1
        return opened

    def sweep(self, key: Hashable, names: Sequence[str], superseded: Callable[[], bool]) -> int:
        """Fused slices of the whole axis of ``key``, nearest first; engine thread.

        Each missing (slice, model) pair costs one plain forward of the slice, kept in
        :attr:`fused_slices`. Stops as soon as ``superseded()`` (the page wants something,
        or the caller's turn is over: see
        :meth:`~fusevis.viewer.app.Connection.work_ahead`) and when the store is full
        (slices nearer the page stay). 3-D networks are left out: their fused
        volume is computed once. Returns the number of fused slices computed.
        """
        if key is None or self.volume is None:
            return 0
        axis, index = key
        flat = self._flat(names)
        slice_bytes = 4 * int(np.prod(self.volume.slice_shape(axis)))
        computed = 0
        for other in [index, *nearest_first(index, self.volume.depths[axis])]:
            other_key = (axis, other)
            missing = [n for n in flat if (other_key, n) not in self.fused_slices]
            if not missing or other_key in self._blank:
                continue
            if superseded():
                return computed
            if self.fused_slices.full(slice_bytes):
                break  # the slices nearer the page stay
            try:
                tensors = tuple(as_tensors(self.volume.image_set(other_key).stack()))
                for name in missing:
                    if superseded():
                        return computed
                    self.fused_slices.put((other_key, name), self.hover.fused_of(name, tensors))
                    computed += 1
            except Exception:  # noqa: BLE001 - blank or failing: its error shows when it is shown
                self._blank.add(other_key)
        self._swept.add((axis, tuple(flat)))
        return computed

    def swept(self, key: Hashable, names: Sequence[str]) -> bool:
        """Whether :meth:`sweep` went through the axis of ``key`` for ``names`` (or cannot)."""
        if key is None or self.volume is None:
            return True
        return (key[0], tuple(self._flat(names))) in self._swept  # type: ignore[index]

    def _is_deep(self, name: str) -> bool:
        return self.deep is not None and name in self.deep

    def _flat(self, names: Sequence[str]) -> list[str]:
        """The 2-D models among ``names``, sorted: those a sweep fuses slice by slice."""
        return sorted(n for n in names if n in self.hover.sessions and not self._is_deep(n))

    def show_maps(self, key: Hashable) -> bool:
        """Make slice ``key`` the one whose maps are computed; False if it is not open."""
        view = self.cached_view(key)
        if view is None:
            return False
        self.maps.show(view.key, view.tensors)
        return True

    @property
    def names(self) -> list[str]:
        """The models' display names, in the order they were given."""
        return list(self.hover.sessions)

    def predicted_seconds(self, name: str, kind: str) -> float | None:
        """How long the maps of ``name`` will take, where that is known before starting.

        A model that is not local is computed with one full-image backward pass per pixel,
        each as long as one of its hovers; for a local model the first passes tell.
        """
        session = self.hover.sessions[name]
        if session.local or session.pixel_seconds <= 0:
            return None
        return self.shape[0] * self.shape[1] * session.pixel_seconds

    def pixel_frame(
        self,
        names: Sequence[str],
        pixel: tuple[int, int],
        superseded: Callable[[], bool] | None = None,
        key: Hashable = None,
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
        """One hover answer: the engine's windows and the guidance values known at the pixel.

        Runs on the engine thread (``data.hover.submit(data.pixel_frame, ...)``); None when
        ``superseded`` said a newer pixel is wanted before every model was computed.
        ``key`` is the slice of a volume (opened here if it is not open).
        """
        view = self.open_view(key, names)
        flat = [name for name in names if not isinstance(view.sessions[name], VolumeSession)]
        answer = self.hover.pixel_frame(flat, pixel, superseded, view.tensors, view.sessions)
        if answer is None:
            return None
        header, arrays = answer
        if self.deep is not None and len(flat) < len(names):  # 3-D networks: the voxel's row
            answers = [self._voxel_answer(name, view, pixel, header, arrays) for name in names]
            header["models"] = dict(zip(names, answers, strict=True))
        header["slice"] = None if view.key is None else list(view.key)
        row, col = header["pixel"]
        for name, info in header["models"].items():
            guidance = self.maps.arrays(name, "guidance", view.key)
            count = len(info["jacobian_at_pixel"])
            info["guidance_at_pixel"] = [
                _value_at(guidance.get(f"guidance_{k}"), row, col) for k in range(count)
            ]
            progress = self.maps.progress(name, "guidance", view.key)
            info["guidance_estimate"] = bool(progress is not None and progress.estimate)
        return header, arrays

    def _voxel_answer(
        self,
        name: str,
        view: SliceView,
        pixel: tuple[int, int],
        header: dict[str, Any],
        arrays: dict[str, np.ndarray],
    ) -> dict[str, Any]:
        """The header entry of ``name`` in a pixel answer (a 3-D network's computed here)."""
        session = view.sessions[name]
        if not isinstance(session, VolumeSession) or self.deep is None:
            return header["models"][name]
        info, found = self.deep.answer(session, pixel)
        arrays.update(found)
        return info

    def export_rows(
        self, name: str, pixel: tuple[int, int], key: Hashable = None
    ) -> tuple[list[np.ndarray], SliceView]:
        """A pixel's image-sized Jacobian rows on slice ``key``, and the slice; engine thread."""
        view = self.open_view(key, [name])
        if isinstance(view.sessions[name], VolumeSession) and self.deep is not None:
            return self.deep.rows(name, view.key, pixel), view  # type: ignore[arg-type]
        return self.hover.full_jacobians(name, pixel, view.tensors, view.sessions), view

    def close(self) -> None:
        """Stop the map worker, then the engine thread."""
        self.maps.close()
        self.hover.close()


def nearest_first(index: int, depth: int) -> list[int]:
    """The slices ``0 .. depth - 1`` other than ``index``, nearest first (above first on ties)."""
    order = []
    for distance in range(1, depth):
        order += [i for i in (index + distance, index - distance) if 0 <= i < depth]
    return order


def _trace(model: nn.Module, num_inputs: int) -> None:
    """Trace the model's graph now (cached per model object; untraceable ones are measured)."""
    try:
        graph_of(model, num_inputs)
    except TraceFailure:
        pass


def _value_at(array: np.ndarray | None, row: int, col: int) -> float | None:
    """A map's value at a pixel for a JSON header (None: not computed, or not finite)."""
    if array is None:
        return None
    value = float(array[row, col])
    return value if np.isfinite(value) else None


def build_viewer_data(
    image_set: ImageSet,
    models: Sequence[str] | None,
    weights: Sequence[str] | None = None,
    cache: str | Path | None = None,
    compute_maps: bool = True,
    *,
    adapt: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
    parts: Sequence[str] | None = None,
    rules: Sequence[str] | None = None,
    ask_above_s: float = ASK_ABOVE_S,
    volume: VolumeSet | None = None,
    start: SliceKey | None = None,
) -> ViewerData:
    """Load models named as on the command line onto an image set.

    ``models``, ``weights``, ``adapt``, ``names``, ``parts`` and ``rules`` are the
    repeatable options of :func:`fusevis.models.specs.load_named_models`, paired by
    position; every model is shown under its display name (``--name``, the adapter's
    name, the network's own ``display_name``, else the registered or class name).
    ``volume`` and ``start``: the volumes ``image_set`` is slice ``start`` of (pages can
    then move through the slices).

    Raises
    ------
    InputError, ModelError
        One line, for a model that cannot be loaded or does not suit the images.
    """
    loaded = load_named_models(
        models, weights, adapt, names, num_inputs=len(image_set), parts=parts, rules=rules
    )
    check_loaded(loaded, list(image_set))
    return ViewerData(
        image_set,
        loaded,
        MapCache(cache) if cache is not None else None,
        compute_maps,
        ask_above_s=ask_above_s,
        volume=volume,
        start=start,
    )
