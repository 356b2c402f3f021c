"""One operation table serves the tracer, the cone and the recorded sweep alike."""

import pytest
import torch
from torch import nn

from fusevis.saliency import PixelJacobian
from fusevis.saliency.cone import ConeUnsupported, cone_of
from fusevis.saliency.graph import graph_of
from fusevis.saliency.ops import TABLE, elementwise, lookup, register, unregister
from fusevis.saliency.trace import TraceFailure, trace_receptive_fields


def test_every_operation_is_named_by_one_entry_only() -> None:
    seen: dict[object, str] = {}
    for op in TABLE:
        for key in (*op.modules, *op.functions, *(f".{m}" for m in op.methods)):
            assert key not in seen, f"{key!r} in {seen.get(key)} and {op.name}"
            seen[key] = op.name
    assert len(seen) > 100


def test_entries_are_consistent() -> None:
    for op in TABLE:
        if not op.local:
            assert op.window is None and op.sweep is None, op.name
        if op.window is not None:
            assert op.sweep is not None, f"{op.name}: the cone runs it, the sweep must too"


class _Erf(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(2, 3, 3, padding=1)
        self.b = nn.Conv2d(3, 1, 3, padding=1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.b(torch.erf(self.a(torch.cat((x, y), dim=1))).exp())


@pytest.fixture
def erf_entry():  # noqa: ANN201
    op = register(elementwise("erf", functions=(torch.erf, torch.special.erf), methods=("erf",)))
    yield op
    unregister(op)


def test_an_unknown_operation_stops_the_tracer_and_the_cone() -> None:
    model = _Erf()
    inputs = tuple(torch.rand(1, 1, 9, 9) for _ in "ab")
    with pytest.raises(TraceFailure, match="function erf is not known"):
        trace_receptive_fields(model, 2)
    with pytest.raises(TraceFailure, match=r"function erf is not known .* at test_ops.py:\d+"):
        trace_receptive_fields(model, 2, inputs)
    with pytest.raises(ConeUnsupported, match="function erf is not known"):
        cone_of(model, 2).geometry(inputs)


def test_one_elementwise_entry_serves_the_tracer_the_cone_and_the_sweep(erf_entry) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    model = _Erf().double().eval()
    graph = graph_of(model)
    assert [s.op for s in graph.steps.values() if s.op is erf_entry]
    inputs = tuple(torch.rand(1, 1, 13, 14, dtype=torch.float64) for _ in range(2))
    assert trace_receptive_fields(model, 2)[0].radius == 2
    assert trace_receptive_fields(model, 2, inputs)[0].radius == 2
    xs = tuple(x.clone().requires_grad_(True) for x in inputs)
    expected = torch.autograd.grad(model(*xs)[0, 0, 0, 5], xs)
    for strategy in ("recorded", "cone"):
        found = PixelJacobian(model, strategy=strategy).explain(inputs, pixel=(0, 5))
        assert found.strategy == strategy
        for got, want in zip(found.dense(), expected, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_a_name_cannot_be_in_two_entries(erf_entry) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="already in the table"):
        register(elementwise("erf again", functions=(torch.erf,)))


def test_modules_are_found_by_class_then_base_class() -> None:
    class MyConv(nn.Conv2d):
        pass

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.conv(x))

    graph = graph_of(Model())
    names = [graph.steps[n].op.name for n in graph.nodes if n.op.startswith("call_")]
    assert names == ["convolution", "relu"]
    node = next(n for n in graph.nodes if n.op == "call_module")
    assert lookup(node, MyConv(1, 1, 3)).name == "convolution"
    assert lookup(node, nn.Identity()).name == "identity"
    assert lookup(node, nn.Unfold(3)) is None
