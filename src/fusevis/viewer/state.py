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
    """What a message changed: the pixel (a new Jacobian frame) and/or the view."""

    pixel: bool = False
    view: bool = False
    maps: bool = False


@dataclass
class ViewerState:
    """Selected pixel, models in view, gamma and value ranges of one viewer.

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
    gamma_guidance, gamma_jacobian : float
        Display gamma of the guidance and Jacobian panels (applied in the browser).
    map_kind : str
        ``"guidance"`` or ``"influence"`` (each input's share of the influence).
    """

    shape: tuple[int, int]
    models: list[str]
    active: str = ""
    compare: list[str] = field(default_factory=list)
    pixel: tuple[int, int] = (0, 0)
    pinned: bool = False
    gamma_guidance: float = 1.0
    gamma_jacobian: float = 0.5
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

    def set_gamma(self, kind: str, value: float) -> None:
        """Set the guidance or Jacobian display gamma (0.1-5)."""
        if not 0.1 <= float(value) <= 5.0:
            raise InputError(None, f"gamma {value} is outside 0.1-5")
        if kind == "guidance":
            self.gamma_guidance = float(value)
        elif kind == "jacobian":
            self.gamma_jacobian = float(value)
        else:
            raise InputError(None, f"unknown gamma {kind!r} (guidance or jacobian)")

    def set_map_kind(self, kind: str) -> None:
        """Show guidance maps or influence shares."""
        if kind not in MAP_KINDS:
            raise InputError(None, f"unknown map kind {kind!r} ({' or '.join(MAP_KINDS)})")
        self.map_kind = kind

    def _known(self, name: str) -> str:
        if name not in self.models:
            raise InputError(
                None, f"unknown model {name!r}; this viewer has {', '.join(self.models)}"
            )
        return name

    def apply(self, message: dict[str, Any]) -> Change:
        """Apply one message from the page and say what changed.

        Message types: ``hover``/``pin`` (``row``, ``col``), ``unpin``, ``move`` (``drow``,
        ``dcol``), ``model`` (``name``), ``compare`` (``names``), ``gamma`` (``kind``,
        ``value``), ``maps`` (``kind``).
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
        if kind == "gamma":
            self.set_gamma(str(message["kind"]), float(message["value"]))
            return Change()
        if kind == "maps":
            self.set_map_kind(str(message["kind"]))
            return Change(view=True, maps=True)
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
            "gamma_guidance": self.gamma_guidance,
            "gamma_jacobian": self.gamma_jacobian,
            "map_kind": self.map_kind,
        }
