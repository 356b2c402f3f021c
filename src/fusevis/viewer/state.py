"""The viewer's state without any GUI: what one browser tab is looking at.

The server keeps one :class:`ViewerState` per connection and changes it only through
:meth:`ViewerState.apply`, so tests drive exactly what the page drives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fusevis.errors import InputError

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
    """

    shape: tuple[int, int]
    models: list[str]
    active: str = ""
    compare: list[str] = field(default_factory=list)
    pixel: tuple[int, int] = (0, 0)
    pinned: bool = False
    map_kind: str = "guidance"

    def __post_init__(self) -> None:
        if not self.models:
            raise InputError(None, "the viewer needs at least one model")
        self.active = self.active or self.models[0]
        if self.pixel == (0, 0):
            self.pixel = (self.shape[0] // 2, self.shape[1] // 2)

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
        ``maps`` (``kind``), ``compute_maps`` (``model``, ``kind``, ``estimate``).
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
        }
