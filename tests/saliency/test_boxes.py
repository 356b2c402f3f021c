"""Boxes and grid fields: the N-dimensional shapes of the volume engine."""

from __future__ import annotations

import pytest
import torch

from fusevis.saliency.boxes import Box, GridField, cut_box, field_box, tiles
from fusevis.saliency.field import ReceptiveField


def test_a_grid_field_has_sizes_reaches_and_unions() -> None:
    field = GridField((-3, 0, -1), (2, 4, 1))
    assert field.stride == (1, 1, 1) and field.dims == 3
    assert field.size == (6, 5, 3) and field.reach == (3, 4, 1)
    assert field.widened(1) == GridField((-4, -1, -2), (3, 5, 2))
    other = GridField((-1, -2, 0), (5, 1, 0), (2, 2, 1))
    assert field.union(other) == GridField((-3, -2, -1), (5, 4, 1), (2, 2, 1))
    assert GridField.cube(2) == GridField((-2,) * 3, (2,) * 3, source="user")
    two = GridField.of_2d(ReceptiveField(-1, 2, -3, 0, (2, 1), "measured"))
    assert two == GridField((-1, -3), (2, 0), (2, 1), "measured")
    with pytest.raises(ValueError, match="lies beyond"):
        GridField((1, 0), (0, 0))


def test_field_boxes_are_clipped_and_on_the_sampling_grid() -> None:
    field = GridField((-3, -1, -2), (2, 4, 2))
    assert field_box(field, Box.voxel((5, 5, 5)), (20, 20, 20)) == Box((2, 4, 3), (8, 10, 8))
    assert field_box(field, Box.voxel((0, 19, 0)), (20, 20, 20)) == Box((0, 18, 0), (3, 20, 3))
    strided = GridField((-3, -1, -2), (2, 4, 2), (4, 2, 1))
    box = field_box(strided, Box.voxel((5, 5, 5)), (20, 18, 9))
    assert box == Box((0, 4, 3), (8, 10, 8))
    assert field_box(strided, Box((16, 16, 7), (20, 18, 9)), (20, 18, 9)).stop == (20, 18, 9)


def test_cut_box_is_a_view_and_tiles_cover_the_grid() -> None:
    volume = torch.arange(6 * 7 * 5).reshape(1, 1, 6, 7, 5)
    have = Box((1, 2, 0), (6, 7, 5))
    part = volume[..., 1:, 2:, :]
    assert cut_box(part, have, have) is part
    want = Box((2, 3, 1), (4, 6, 2))
    torch.testing.assert_close(cut_box(part, have, want), volume[..., 2:4, 3:6, 1:2])
    assert want.within(have) == (slice(1, 3), slice(1, 4), slice(1, 2))
    parts = tiles((6, 7, 5), 4)
    assert len(parts) == 2 * 2 * 2 and parts[0] == Box((0, 0, 0), (4, 4, 4))
    covered = torch.zeros(6, 7, 5)
    for box in parts:
        covered[box.as_slices()] += 1
    assert bool((covered == 1).all())
