"""Windows and receptive fields: the rectangles every saliency module passes around."""

import pytest
import torch

from fusevis.saliency import ReceptiveField, Window
from fusevis.saliency.field import cut, field_window


def test_a_window_grows_shifts_clips_and_unites() -> None:
    window = Window.pixel(3, 4)
    assert window == Window(3, 4, 4, 5) and window.shape == (1, 1)
    grown = window.grow((2, 1), (1, 3))
    assert grown == Window(1, 5, 3, 8) and grown.shape == (4, 5)
    assert grown.shift(-2, 1) == Window(-1, 3, 4, 9)
    assert grown.shift(-2, 1).clip(10, 6) == Window(0, 3, 4, 6)
    assert window.union(None) is window
    assert window.union(Window(0, 2, 7, 9)) == Window(0, 4, 4, 9)
    assert grown.as_slices() == (slice(1, 5), slice(3, 8))


def test_cut_takes_a_window_out_of_a_tensor_covering_another() -> None:
    image = torch.arange(8 * 9).reshape(1, 1, 8, 9)
    have = Window(2, 8, 1, 9)
    part = image[..., 2:8, 1:9]
    assert cut(part, have, have) is part
    want = Window(3, 5, 4, 7)
    torch.testing.assert_close(cut(part, have, want), image[..., 3:5, 4:7])
    assert cut(part, have, want).untyped_storage().data_ptr() == image.untyped_storage().data_ptr()


def test_the_field_window_is_clipped_and_on_the_sampling_grid() -> None:
    field = ReceptiveField(-3, 2, -1, 4)
    assert field_window(field, (5, 6), (5, 6), (20, 20)) == Window(2, 8, 4, 10)
    assert field_window(field, (0, 1), (18, 20), (20, 20)) == Window(0, 3, 17, 20)
    strided = ReceptiveField(-3, 2, -1, 4, stride=(4, 4))
    window = field_window(strided, (5, 6), (5, 6), (20, 18))
    assert window == Window(0, 8, 4, 12)
    assert window.top % 4 == 0 and window.left % 4 == 0
    assert field_window(strided, (16, 20), (16, 18), (20, 18)).bottom == 20  # the image ends


def test_receptive_field_sizes_and_combinations() -> None:
    field = ReceptiveField(-3, 2, -1, 4, stride=(2, 1))
    assert (field.height, field.width, field.radius) == (6, 6, 4)
    assert field.widened(2) == ReceptiveField(-5, 4, -3, 6, stride=(2, 1))
    other = ReceptiveField(-1, 5, -2, 0, stride=(1, 3))
    assert field.union(other) == ReceptiveField(-3, 5, -2, 4, stride=(2, 3))
    assert ReceptiveField.square(2) == ReceptiveField(-2, 2, -2, 2, source="user")


@pytest.mark.parametrize("frozen", ["top", "bottom"])
def test_windows_are_values(frozen: str) -> None:
    window = Window(0, 1, 0, 1)
    with pytest.raises(AttributeError):
        setattr(window, frozen, 5)
    assert {window, Window(0, 1, 0, 1)} == {window}
