"""ViewerState: the viewer's logic without a GUI."""

import pytest

from fusevis.errors import InputError
from fusevis.viewer.state import ViewerState


def state() -> ViewerState:
    return ViewerState((40, 50), ["A", "B", "C", "D", "E"])


def test_starts_at_the_centre_with_the_first_model() -> None:
    s = state()
    assert s.pixel == (20, 25) and s.active == "A" and s.in_view == ["A"]


def test_hover_follows_until_pinned_and_arrows_move_the_pin() -> None:
    s = state()
    assert s.apply({"type": "hover", "row": 3, "col": 4}).pixel
    assert s.pixel == (3, 4)
    s.apply({"type": "pin", "row": 5, "col": 6})
    assert not s.apply({"type": "hover", "row": 9, "col": 9}).pixel
    assert s.pixel == (5, 6)
    assert s.apply({"type": "move", "drow": 0, "dcol": 1}).pixel
    assert s.pixel == (5, 7)
    s.apply({"type": "unpin"})
    assert s.hover((1, 1)) and s.pixel == (1, 1)


def test_moves_stop_at_the_border() -> None:
    s = state()
    s.pin((0, 49))
    assert not s.move(-1, 0) and not s.move(0, 1)
    assert s.pixel == (0, 49)


def test_pixel_outside_the_image_is_a_clear_error() -> None:
    with pytest.raises(InputError, match=r"pixel \(40, 3\) is outside the 40x50 image"):
        state().hover((40, 3))


def test_compare_two_to_four_models() -> None:
    s = state()
    change = s.apply({"type": "compare", "names": ["B", "C"]})
    assert change.view and s.in_view == ["B", "C"]
    with pytest.raises(InputError, match="at most 4 models side by side"):
        s.set_compare(["A", "B", "C", "D", "E"])
    s.set_compare(["D"])
    assert s.compare == [] and s.active == "D"
    with pytest.raises(InputError, match="unknown model 'Z'; this viewer has A, B"):
        s.select("Z")


def test_gamma_and_map_kind() -> None:
    s = state()
    s.apply({"type": "gamma", "kind": "jacobian", "value": 0.5})
    assert s.gamma_jacobian == 0.5 and s.gamma_guidance == 1.0
    with pytest.raises(InputError, match="gamma 9.0 is outside"):
        s.set_gamma("guidance", 9.0)
    assert s.apply({"type": "maps", "kind": "influence"}).maps
    with pytest.raises(InputError, match="unknown map kind 'x'"):
        s.set_map_kind("x")
    with pytest.raises(InputError, match="unknown message type 'dance'"):
        s.apply({"type": "dance"})
    assert s.snapshot()["map_kind"] == "influence"
