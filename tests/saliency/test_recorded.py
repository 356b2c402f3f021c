"""The record of a full-image forward, and the backward sweep from it."""

import pytest
import torch
from torch import nn
from torch.nn import functional

from fusevis.saliency.cone import cone_of
from fusevis.saliency.inputs import as_input_tuple
from fusevis.saliency.recorded import record_forward

from .test_sweeps import assert_sweep_is_autograd


class _Everything(nn.Module):
    """Convolutions, ReLUs, sums plain and broadcasting, a learned bias, concatenation."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(2, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.other = nn.Tanh()
        self.bias = nn.Parameter(torch.rand(1, 4, 1, 1))
        self.b = nn.Conv2d(8, 1, 3, padding=2, dilation=2)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.a(torch.cat((x, y), dim=1)))
        g = self.other(h + self.bias)  # broadcasting
        k = functional.relu(torch.add(h, g, alpha=0.5) - 0.25, inplace=True)
        return self.b(torch.cat((h + g, k), dim=1))


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    return _Everything().double().eval()


def _inputs(size: tuple[int, int] = (12, 13)) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(1)
    return tuple(torch.rand(1, 1, *size, generator=generator, dtype=torch.float64) for _ in "ab")


def test_each_node_gets_the_sweep_its_table_entry_and_its_use_give(model: nn.Module) -> None:
    cone = cone_of(model, 2)
    record = record_forward(cone, _inputs())
    assert record is not None
    sweeps = {
        node.name: type(record.sweeps[node]).__name__
        for node in cone.graph.nodes
        if node in record.sweeps
    }
    assert sweeps == {
        "cat": "ConcatSweep",
        "a": "ConvSweep",
        "relu": "MaskSweep",  # nn.ReLU
        "add": "PointwiseSweep",  # h + bias broadcasts: derivative maps
        "other": "PointwiseSweep",  # tanh
        "add_1": "PointwiseSweep",  # alpha=0.5
        "sub": "PointwiseSweep",
        "relu_1": "AutogradSweep",  # inplace=True
        "add_2": "SumSweep",
        "cat_1": "ConcatSweep",
        "b": "ConvSweep",
    }
    assert record.nbytes > 0 and record.masks and record.values


@pytest.mark.parametrize("pixel", [(0, 0), (6, 6), (11, 12), (0, 12)])
def test_the_sweep_gives_the_full_image_gradient(model: nn.Module, pixel) -> None:  # noqa: ANN001
    assert_sweep_is_autograd(model, _inputs(), [pixel])


def test_a_record_serves_only_the_unmodified_tensors_it_was_made_from(model: nn.Module) -> None:
    images = tuple(x[0, 0].clone() for x in _inputs())  # (H, W): new views on every call
    cone = cone_of(model, 2)
    record = record_forward(cone, as_input_tuple(images))
    assert record.made_from(as_input_tuple(images))
    assert not record.made_from(as_input_tuple(tuple(x.clone() for x in images)))
    assert not record.made_from(as_input_tuple(images[:1]))
    images[1][3, 3] = 0.5  # in place: the version counter moves
    assert not record.made_from(as_input_tuple(images))


def test_a_record_above_the_limit_is_not_made(model: nn.Module) -> None:
    cone = cone_of(model, 2)
    assert record_forward(cone, _inputs(), limit=1000) is None
    assert record_forward(cone, _inputs(), limit=10**9) is not None
