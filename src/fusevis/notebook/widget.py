"""The :class:`Explorer` widget: the viewer's panels in a notebook, linked to Python.

The page and Python share the selected pixel (:attr:`Explorer.pixel`), the pin and the
brushed region (:attr:`Explorer.region`) as widget traits that either side can set and
Python can ``observe``; :attr:`Explorer.jacobian`, :attr:`Explorer.maps` and
:attr:`Explorer.fused` return tensors. The kernel side is a
:class:`~fusevis.notebook.session.NotebookSession`; the front end is the viewer's ES modules
(:mod:`fusevis.notebook.frontend`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import torch
import traitlets

from fusevis.errors import FuseVisError
from fusevis.notebook.errors import ExplorerError
from fusevis.notebook.frontend import widget_css, widget_esm
from fusevis.notebook.inputs import ModelsArgument, as_image_set, as_models, as_volume_set
from fusevis.notebook.session import NotebookSession
from fusevis.saliency import MapCache
from fusevis.saliency.inputs import check_pixel
from fusevis.viewer.data import ViewerData
from fusevis.viewer.scheduler import ASK_ABOVE_S
from fusevis.viewer.slices import SliceView
from fusevis.viewer.volume import AXES, axis_name, parse_axis

Region = tuple[int, int, int, int]


class Explorer(anywidget.AnyWidget):
    """Hover a fusion network's output in a notebook and see each pixel's exact Jacobian.

    Shows the viewer's panels (inputs, guidance maps or influence shares, Jacobian rows with
    zoom windows and colour bars, fused image, guidance RGB, the G1-G2 scatter plot, 2-4
    models side by side) for models and images given in Python.

    Parameters
    ----------
    models : nn.Module, str, or a list of them, or dict of str to nn.Module
        The networks: modules, shipped networks by name (``"DeepFuse"``) or model specs
        as on the command line; a dict gives display names.
    inputs : sequence of tensors, numpy arrays or paths, or ImageSet, or VolumeSet
        The registered inputs (two or more, one shape); arrays are min-max scaled, files are
        read as :func:`fusevis.io.load_image` reads them. Volumes (NIfTI or DICOM paths,
        all of them, or a :class:`~fusevis.viewer.volume.VolumeSet`) are shown a slice
        at a time, with the page's slice slider and axis choice (see :attr:`slice`).
    slice, axis : int and str, optional
        For volumes, the slice shown first (default: the middle one) and its axis
        (``"axial"``, the default, ``"coronal"`` or ``"sagittal"``, or 2, 1, 0).
    cache : str or path, optional
        Where maps are cached (default: $FUSEVIS_CACHE).
    compute_maps : bool
        Start the guidance maps of the models in view when the widget is shown.
    ask_above_s : float
        Maps predicted to take longer wait for the user's go in the page.

    Attributes
    ----------
    pixel : (int, int)
        The explained pixel (row, col); hovering the page changes it, setting it moves the
        page's marker.
    pinned : bool
        Whether the pixel is pinned (hovering ignored).
    region : (top, bottom, left, right) or None
        The selected rectangle (ends excluded, as slices): a shift-drag in the page sets it,
        setting it tints it in the page.
    slice : int or None
        For volumes, the slice in view (None for 2-D images); the page's slider and
        PageUp/PageDown change it, setting it shows that slice in the page.
    axis : str or None
        For volumes, ``"axial"``, ``"coronal"`` or ``"sagittal"`` (None for 2-D images);
        set it (a name or 0-2) to look across another axis, at the slice last shown there.

    Raises
    ------
    ExplorerError
        One line, for inputs or models that cannot be used.

    Examples
    --------
    >>> w = Explorer(["DeepFuse", "FunFuseAn"], (mri, pet))  # doctest: +SKIP
    >>> w  # doctest: +SKIP
    >>> w.pixel = (120, 64); w.jacobian["DeepFuse"][1].shape  # doctest: +SKIP
    """

    _esm = widget_esm()
    _css = widget_css()
    pixel = traitlets.Tuple(traitlets.Int(), traitlets.Int(), default_value=(0, 0)).tag(sync=True)
    pinned = traitlets.Bool(False).tag(sync=True)
    region = traitlets.Tuple(default_value=None, allow_none=True).tag(sync=True)
    slice = traitlets.Int(None, allow_none=True).tag(sync=True)
    axis = traitlets.Unicode(None, allow_none=True).tag(sync=True)

    def __init__(
        self,
        models: ModelsArgument,
        inputs: Any,
        *,
        slice: int | None = None,  # the trait's name
        axis: int | str = "axial",
        cache: str | PathLike[str] | None = None,
        compute_maps: bool = True,
        ask_above_s: float = ASK_ABOVE_S,
        **kwargs: Any,
    ) -> None:
        self._session: NotebookSession | None = None
        try:
            volume = as_volume_set(inputs)
            start = None
            if volume is not None:
                chosen = parse_axis(axis)
                index = volume.depths[chosen] // 2 if slice is None else slice
                start = volume.check((chosen, index))
                image_set = volume.image_set(start)
            else:
                image_set = as_image_set(inputs)
            named = as_models(models, image_set)
            data = ViewerData(
                image_set,
                named,
                MapCache(cache) if cache is not None else None,
                compute_maps,
                ask_above_s=ask_above_s,
                volume=volume,
                start=start,
            )
        except FuseVisError as error:
            raise ExplorerError(str(error)) from None
        super().__init__(**kwargs)
        self._session = NotebookSession(data, self._to_page)
        self.pixel = self._session.state.pixel
        self._sync_slice()
        self.on_msg(self._on_page_message)

    def _sync_slice(self) -> None:
        """The traits ``slice`` and ``axis`` from the session's state."""
        state = self._live().state
        if state.slice_key is None:
            return
        axis, index = axis_name(state.axis), state.index
        if (self.axis, self.slice) != (axis, index):
            with self.hold_trait_notifications():
                self.axis, self.slice = axis, index

    # -- the link to the page -----------------------------------------------------------
    def _to_page(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        if self.comm is not None:
            self.send(content, buffers)

    def _on_page_message(self, _widget: object, content: Any, _buffers: Sequence[Any]) -> None:
        session = self._live()
        if isinstance(content, dict) and content.get("type") == "region":
            try:  # a shift-drag in the page; the trait's change is sent back and tinted there
                self.region = content.get("region")
            except FuseVisError as error:
                session.error(str(error))
            return
        session.handle(content)
        state = session.state
        self._sync_slice()
        if tuple(self.pixel) != state.pixel:
            self.pixel = state.pixel
        if self.pinned != state.pinned:
            self.pinned = state.pinned

    @traitlets.validate("pixel")
    def _valid_pixel(self, proposal: dict[str, Any]) -> tuple[int, int]:
        if self._session is None:
            return tuple(proposal["value"])
        try:
            return check_pixel(proposal["value"], self._session.state.shape)
        except FuseVisError as error:
            raise ExplorerError(str(error)) from None

    @traitlets.observe("pixel")
    def _pixel_changed(self, change: dict[str, Any]) -> None:
        session = self._session
        if session is not None and tuple(change["new"]) != session.state.pixel:
            session.set_pixel(change["new"])  # set in Python: the page's marker follows

    @traitlets.observe("pinned")
    def _pinned_changed(self, change: dict[str, Any]) -> None:
        session = self._session
        if session is not None and change["new"] != session.state.pinned:
            session.state.pinned = bool(change["new"])
            session.set_pixel(session.state.pixel)

    @traitlets.validate("slice")
    def _valid_slice(self, proposal: dict[str, Any]) -> int | None:
        value, session = proposal["value"], self._session
        if session is None:
            return value
        state = session.state
        if state.depths is None:
            if value is None:
                return None
            raise ExplorerError("these inputs are 2-D images: there are no slices")
        depth = state.depths[state.axis]
        if value is None or not 0 <= value < depth:
            raise ExplorerError(
                f"slice {value} is outside the volume ({axis_name(state.axis)} slices "
                f"0-{depth - 1})"
            )
        return value

    @traitlets.validate("axis")
    def _valid_axis(self, proposal: dict[str, Any]) -> str | None:
        value, session = proposal["value"], self._session
        if session is None or (value is None and session.state.depths is None):
            return value
        if session.state.depths is None:
            raise ExplorerError("these inputs are 2-D images: there are no slices")
        try:
            chosen = value if value in AXES else int(value)
            return axis_name(parse_axis(chosen))
        except (FuseVisError, TypeError, ValueError):
            raise ExplorerError(
                f"unknown axis {value!r}: use {', '.join(AXES)} (or 0, 1, 2)"
            ) from None

    @traitlets.observe("slice", "axis")
    def _slice_changed(self, change: dict[str, Any]) -> None:
        session = self._session
        if session is None or session.state.depths is None:
            return
        state = session.state
        if change["name"] == "axis" and change["new"] != axis_name(state.axis):
            session.set_slice(axis=change["new"])  # the slice last shown across that axis
            self._sync_slice()
            if tuple(self.pixel) != state.pixel:  # centred in the new slice shape
                self.pixel = state.pixel
        elif change["name"] == "slice" and change["new"] != state.index:
            session.set_slice(index=change["new"])

    @traitlets.validate("region")
    def _valid_region(self, proposal: dict[str, Any]) -> Region | None:
        value = proposal["value"]
        if value is None or self._session is None:
            return value
        height, width = self._session.state.shape
        try:
            top, bottom, left, right = (int(v) for v in value)
        except (TypeError, ValueError):
            raise ExplorerError(
                f"region must be (top, bottom, left, right), got {value!r}"
            ) from None
        if not (0 <= top < bottom <= height and 0 <= left < right <= width):
            raise ExplorerError(
                f"region {(top, bottom, left, right)} is not a rectangle inside the "
                f"{height}x{width} image (top < bottom <= {height}, left < right <= {width})"
            )
        return top, bottom, left, right

    def _live(self) -> NotebookSession:
        if self._session is None:
            raise ExplorerError("this explorer is closed")
        return self._session

    # -- what Python reads ----------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        """The models' display names."""
        return self._live().data.names

    @property
    def shape(self) -> tuple[int, int]:
        """The images' (height, width) (of the slice in view, for volumes)."""
        return self._live().state.shape

    def _view(self) -> SliceView:
        """The slice in view with every model opened on it (engine thread)."""
        session = self._live()
        data, key = session.data, session.state.slice_key
        try:
            return data.hover.submit(data.open_view, key, data.names).result()
        except FuseVisError as error:
            raise ExplorerError(str(error)) from None

    @property
    def inputs(self) -> list[torch.Tensor]:
        """The inputs as the models take them, (1, C, H, W) each (the slice in view)."""
        return list(self._view().tensors)

    @property
    def fused(self) -> dict[str, torch.Tensor]:
        """Each model's fused image (the slice in view), (H, W), by display name."""
        sessions = self._view().sessions
        return {name: torch.from_numpy(s.fused.copy()) for name, s in sessions.items()}

    @property
    def jacobian(self) -> dict[str, tuple[torch.Tensor, ...]]:
        """The current pixel's Jacobian rows, per model: one (1, C, H, W) tensor per input.

        Exactly what :meth:`fusevis.saliency.PixelJacobian.attribute` returns for
        :attr:`pixel` (zero outside the pixel's receptive field).
        """
        return self.jacobian_at(self.pixel)

    def jacobian_at(self, pixel: tuple[int, int]) -> dict[str, tuple[torch.Tensor, ...]]:
        """The Jacobian rows of any pixel, per model (see :attr:`jacobian`)."""
        data = self._live().data
        view = self._view()
        try:
            chosen = check_pixel(pixel, view.shape)
        except FuseVisError as error:
            raise ExplorerError(str(error)) from None

        def rows() -> dict[str, tuple[torch.Tensor, ...]]:
            return {
                name: tuple(r.detach() for r in s.jacobian.attribute(view.tensors, pixel=chosen))
                for name, s in view.sessions.items()
            }

        return data.hover.submit(rows).result()

    @property
    def maps(self) -> dict[str, dict[str, tuple[torch.Tensor, ...]]]:
        """Guidance maps (summed over channels) and influence shares, per model.

        ``w.maps[name]["guidance"][k]`` and ``w.maps[name]["influence"][k]`` are (H, W);
        computed (and cached) first where needed: this waits for them.
        """
        return self.compute_maps()

    def compute_maps(
        self, timeout_s: float = 3600.0
    ) -> dict[str, dict[str, tuple[torch.Tensor, ...]]]:
        """Compute (or take from the cache) every model's maps and return them (see :attr:`maps`).

        Raises
        ------
        ExplorerError
            A map job failed, or did not finish within ``timeout_s``.
        """
        session = self._live()
        self._view()  # open, so that its maps can be computed
        session.data.show_maps(session.state.slice_key)
        scheduler = session.data.maps
        jobs = {name: scheduler.request(name, "influence", confirm=True) for name in self.names}
        deadline = time.monotonic() + timeout_s
        while not all(job.finished for job in jobs.values()):
            for name, job in jobs.items():
                if job.state == "error":
                    raise ExplorerError(f"the maps of {name} failed: {job.error}")
            if time.monotonic() > deadline:
                raise ExplorerError(f"the maps did not finish within {timeout_s:g} s")
            time.sleep(0.05)
        count = len(self.inputs)
        found = {}
        for name, job in jobs.items():
            arrays = job.arrays
            found[name] = {
                kind: tuple(torch.from_numpy(np.array(arrays[f"{kind}_{k}"])) for k in range(count))
                for kind in ("guidance", "influence")
            }
        return found

    @property
    def region_mask(self) -> torch.Tensor:
        """The selected region as an (H, W) boolean mask (all False without a region)."""
        mask = torch.zeros(self.shape, dtype=torch.bool)
        if self.region is not None:
            top, bottom, left, right = self.region
            mask[top:bottom, left:right] = True
        return mask

    def export_npz(self, path: str | PathLike[str], model: str | None = None) -> Path:
        """Save the view's data as the viewer's export does (inputs, fused, maps, Jacobians)."""
        try:
            _, content = self._live().export_npz(model)
        except FuseVisError as error:
            raise ExplorerError(str(error)) from None
        target = Path(path)
        target.write_bytes(content)
        return target

    def close(self) -> None:
        """Stop the widget's threads and close it in the page."""
        session, self._session = self._session, None
        if session is not None:
            session.close()
        super().close()
