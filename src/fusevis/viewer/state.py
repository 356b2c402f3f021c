"""The viewer's state without any GUI: what one browser tab is looking at.

The server keeps one :class:`ViewerState` per connection and changes it only through
:meth:`ViewerState.apply`, so tests drive exactly what the page drives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fusevis.errors import InputError
from fusevis.viewer.volume import AXES, axis_name, parse_axis

MAP_KINDS = ("guidance", "influence")
MAX_COMPARED = 4


@dataclass
class Change:
    """What a message asks of the server.

    Attributes
    ----------
    pixel : bool
        The explained pixel changed: a new pixel frame is wanted.
    view : bool
        The models or maps in view changed: images and maps are sent again.
    compute : (str, str, bool) or None
        The user's go for maps that were predicted to take long: ``(model, kind,
        estimate)``.
    """

    pixel: bool = False
    view: bool = False
    compute: tuple[str, str, bool] | None = None


@dataclass
class ViewerState:
    """Selected pixel, pin, models and maps in view of one viewer page.

    Attributes
    ----------
    shape : (int, int)
        Image height and width.
    models : list of str
        Every model the server holds.
    active : str
        The model shown in single mode.
    compare : list of str
        2-4 models shown side by side on the same pixel (empty: single mode).
    pixel : (int, int)
        The fused pixel explained.
    pinned : bool
        A pinned pixel ignores hovering; arrow keys move it.
    map_kind : str
        ``"guidance"`` or ``"influence"`` (each input's share of the influence).
    depths : (int, int, int) or None
        For a volume: its number of slices along each axis (None: 2-D images).
    slice_shapes : three (int, int) or None
        For a volume: the (H, W) of a slice across each axis.
    axis, index : int
        For a volume: the slice in view (axis 0 sagittal, 1 coronal, 2 axial).
    """

    shape: tuple[int, int]
    models: list[str]
    active: str = ""
    compare: list[str] = field(default_factory=list)
    pixel: tuple[int, int] = (0, 0)
    pinned: bool = False
    map_kind: str = "guidance"
    depths: tuple[int, int, int] | None = None
    slice_shapes: tuple[tuple[int, int], ...] | None = None
    axis: int = 2
    index: int = 0
    _indices: dict[int, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.models:
            raise InputError(None, "the viewer needs at least one model")
        if self.depths is not None:
            self._indices[self.axis] = self.index
        self.active = self.active or self.models[0]
        if self.pixel == (0, 0):
            self.pixel = (self.shape[0] // 2, self.shape[1] // 2)

    @property
    def slice_key(self) -> tuple[int, int] | None:
        """``(axis, index)`` of the slice in view; None for 2-D images."""
        return None if self.depths is None else (self.axis, self.index)

    def set_slice(self, axis: object = None, index: object = None) -> bool:
        """Show another slice (``index``) or axis (``axis``: 0-2 or its name); True if changed.

        A new axis without an index returns to the slice last shown across it (at first
        its middle one) and moves the pixel to the centre of the new slice shape.
        """
        if self.depths is None or self.slice_shapes is None:
            raise InputError(None, "these inputs are 2-D images: there are no slices")
        if axis is None and index is None:
            raise InputError(None, "message 'slice' needs an 'axis' or an 'index'")
        chosen_axis = self.axis if axis is None else parse_axis(axis)
        depth = self.depths[chosen_axis]
        if index is None:
            chosen = self._indices.get(chosen_axis, depth // 2)
        elif isinstance(index, bool) or not isinstance(index, int):
            raise InputError(None, f"'index' must be a whole number, not {index!r}")
        elif not 0 <= index < depth:
            raise InputError(
                None,
                f"slice {index} is outside the volume "
                f"({axis_name(chosen_axis)} slices 0-{depth - 1})",
            )
        else:
            chosen = index
        changed = (chosen_axis, chosen) != (self.axis, self.index)
        if chosen_axis != self.axis:
            self.shape = self.slice_shapes[chosen_axis]
            self.pixel = (self.shape[0] // 2, self.shape[1] // 2)
        self.axis, self.index = chosen_axis, chosen
        self._indices[chosen_axis] = chosen
        return changed

    @property
    def in_view(self) -> list[str]:
        """The models whose panels are shown: the compared ones, or the active one."""
        return list(self.compare) if self.compare else [self.active]

    def _inside(self, pixel: tuple[int, int]) -> tuple[int, int]:
        row, col = int(pixel[0]), int(pixel[1])
        if not (0 <= row < self.shape[0] and 0 <= col < self.shape[1]):
            raise InputError(
                None, f"pixel ({row}, {col}) is outside the {self.shape[0]}x{self.shape[1]} image"
            )
        return row, col

    def hover(self, pixel: tuple[int, int]) -> bool:
        """Follow the mouse unless pinned; True if the pixel changed."""
        if self.pinned:
            return False
        chosen = self._inside(pixel)
        changed = chosen != self.pixel
        self.pixel = chosen
        return changed

    def pin(self, pixel: tuple[int, int] | None = None) -> None:
        """Pin the pixel (at ``pixel`` if given)."""
        if pixel is not None:
            self.pixel = self._inside(pixel)
        self.pinned = True

    def unpin(self) -> None:
        """Follow the mouse again."""
        self.pinned = False

    def move(self, drow: int, dcol: int) -> bool:
        """Move the pixel by (drow, dcol), stopping at the border; True if it moved."""
        row = min(max(self.pixel[0] + int(drow), 0), self.shape[0] - 1)
        col = min(max(self.pixel[1] + int(dcol), 0), self.shape[1] - 1)
        changed = (row, col) != self.pixel
        self.pixel = (row, col)
        return changed

    def select(self, name: str) -> None:
        """Make ``name`` the active model (single mode)."""
        self.active = self._known(name)
        self.compare = []

    def set_compare(self, names: list[str]) -> None:
        """Show 2-4 models side by side; fewer than 2 returns to single mode."""
        chosen = list(dict.fromkeys(self._known(n) for n in names))
        if len(chosen) > MAX_COMPARED:
            raise InputError(None, f"at most {MAX_COMPARED} models side by side")
        self.compare = chosen if len(chosen) >= 2 else []
        if len(chosen) == 1:
            self.active = chosen[0]

    def set_map_kind(self, kind: str) -> None:
        """Show guidance maps or influence shares."""
        if kind not in MAP_KINDS:
            raise InputError(None, f"unknown map kind {kind!r} ({' or '.join(MAP_KINDS)})")
        self.map_kind = kind

    def compute(self, name: str, kind: str, estimate: object = False) -> tuple[str, str, bool]:
        """The user's go for the ``kind`` maps of ``name`` (exact, or an estimate)."""
        if kind not in MAP_KINDS:
            raise InputError(None, f"unknown map kind {kind!r} ({' or '.join(MAP_KINDS)})")
        if not isinstance(estimate, bool):
            raise InputError(None, f"'estimate' must be true or false, not {estimate!r}")
        return self._known(name), kind, estimate

    def _known(self, name: str) -> str:
        if name not in self.models:
            raise InputError(
                None, f"unknown model {name!r}; this viewer has {', '.join(self.models)}"
            )
        return name

    def apply(self, message: dict[str, Any]) -> Change:
        """Apply one message from the page and say what changed.

        Message types (see docs/viewer.md): ``hover``/``pin`` (``row``, ``col``), ``unpin``,
        ``move`` (``drow``, ``dcol``), ``model`` (``name``), ``compare`` (``names``),
        ``maps`` (``kind``), ``compute_maps`` (``model``, ``kind``, ``estimate``),
        ``slice`` (``axis``, ``index``: either or both).
        """
        kind = message.get("type")
        if kind == "hover":
            return Change(pixel=self.hover((message["row"], message["col"])))
        if kind == "pin":
            self.pin((message["row"], message["col"]))
            return Change(pixel=True)
        if kind == "unpin":
            self.unpin()
            return Change()
        if kind == "move":
            return Change(pixel=self.move(message.get("drow", 0), message.get("dcol", 0)))
        if kind == "model":
            self.select(str(message["name"]))
            return Change(pixel=True, view=True)
        if kind == "compare":
            self.set_compare([str(n) for n in message.get("names", [])])
            return Change(pixel=True, view=True)
        if kind == "maps":
            self.set_map_kind(str(message["kind"]))
            return Change(view=True)
        if kind == "compute_maps":
            found = self.compute(
                str(message["model"]), str(message["kind"]), message.get("estimate", False)
            )
            return Change(compute=found)
        if kind == "slice":
            changed = self.set_slice(message.get("axis"), message.get("index"))
            return Change(pixel=changed, view=changed)
        raise InputError(None, f"unknown message type {kind!r}")

    def snapshot(self) -> dict[str, Any]:
        """The state as JSON for the page."""
        return {
            "shape": list(self.shape),
            "models": self.models,
            "active": self.active,
            "compare": self.compare,
            "in_view": self.in_view,
            "pixel": list(self.pixel),
            "pinned": self.pinned,
            "map_kind": self.map_kind,
            "volume": None
            if self.depths is None
            else {
                "axis": self.axis,
                "index": self.index,
                "depths": list(self.depths),
                "axes": list(AXES),
            },
        }
