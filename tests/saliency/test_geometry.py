"""The geometry's shape pass: convolutions are not computed, their shapes must still be right."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional

from fusevis.saliency.geometry import _propagate, _Shape
from fusevis.saliency.graph import graph_of

CONVOLUTIONS = [
    dict(kernel_size=3, padding=1),
    dict(kernel_size=5, padding=0, stride=2),
    dict(kernel_size=3, padding=2, dilation=2),
    dict(kernel_size=(3, 5), padding=(1, 0), stride=(1, 2)),
    dict(kernel_size=3, padding="same"),
    dict(kernel_size=4, padding="same", dilation=3),
    dict(kernel_size=3, padding="valid", stride=3),
    dict(kernel_size=3, padding=1, groups=2),
    dict(kernel_size=3, padding=1, padding_mode="reflect"),
    dict(kernel_size=4, padding="same", padding_mode="replicate"),
    dict(kernel_size=3, padding=(2, 1), stride=2, padding_mode="circular"),
]


class ModuleConv(nn.Module):
    def __init__(self, options: dict) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 6, **options)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([a, b, a, b], dim=1)).relu()


class FunctionalConv(ModuleConv):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        options = {k: v for k, v in self.options.items() if k in ("stride", "padding", "dilation")}
        return functional.conv2d(
            torch.cat([a, b, a, b], dim=1),
            self.conv.weight,
            self.conv.bias,
            groups=self.conv.groups,
            **options,
        )


CASES = [(ModuleConv, options) for options in CONVOLUTIONS] + [
    (FunctionalConv, options) for options in CONVOLUTIONS if "padding_mode" not in options
]


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize(("style", "options"), CASES, ids=str)
@pytest.mark.parametrize("size", [(17, 23), (32, 32)])
def test_shape_pass_gives_every_convolution_its_true_shape(
    style: type, options: dict, size: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = style(options)
    model.options = options
    graph = graph_of(model)
    computed = []
    real_conv = functional.conv2d
    monkeypatch.setattr(
        functional, "conv2d", lambda *a, **k: computed.append(1) or real_conv(*a, **k)
    )
    found = _propagate(graph, [(1, 1, *size), (1, 1, *size)], torch.float32, "cpu")
    assert not computed  # the shape pass convolved nothing
    monkeypatch.undo()
    truth = {}

    class Real(torch.fx.Interpreter):
        def run_node(self, n):
            result = super().run_node(n)
            truth[n] = tuple(result.shape) if isinstance(result, torch.Tensor) else None
            return result

    Real(graph.module).run(torch.rand(1, 1, *size), torch.rand(1, 1, *size))
    checked = 0
    for node, shape in truth.items():
        if shape is not None:
            assert isinstance(found[node], _Shape)
            assert tuple(found[node]) == shape, node.name
            checked += 1
    assert checked >= 3
