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


def test_map_kind_and_the_go_for_long_maps() -> None:
    s = state()
    change = s.apply({"type": "maps", "kind": "influence"})
    assert change.view and not change.pixel and change.compute is None
    with pytest.raises(InputError, match="unknown map kind 'x'"):
        s.set_map_kind("x")
    assert s.snapshot()["map_kind"] == "influence"
    go = s.apply({"type": "compute_maps", "model": "B", "kind": "guidance"})
    assert go.compute == ("B", "guidance", False) and not go.view and not go.pixel
    go = s.apply({"type": "compute_maps", "model": "C", "kind": "influence", "estimate": True})
    assert go.compute == ("C", "influence", True)
    with pytest.raises(InputError, match="unknown model 'Z'"):
        s.apply({"type": "compute_maps", "model": "Z", "kind": "guidance"})
    with pytest.raises(InputError, match="'estimate' must be true or false"):
        s.apply({"type": "compute_maps", "model": "A", "kind": "guidance", "estimate": "yes"})


def test_unknown_and_removed_messages_are_refused() -> None:
    s = state()
    with pytest.raises(InputError, match="unknown message type 'dance'"):
        s.apply({"type": "dance"})
    # gamma is the page's own business (it recolours in the browser): no server state
    with pytest.raises(InputError, match="unknown message type 'gamma'"):
        s.apply({"type": "gamma", "kind": "jacobian", "value": 0.5})
    assert "gamma_guidance" not in s.snapshot()
