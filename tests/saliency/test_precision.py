"""The engine computes with TF32 off and gives the user's settings back."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from fusevis.saliency import PixelJacobian, compute_maps
from fusevis.saliency.precision import exact_float32, without_tf32
from fusevis.saliency.volumetric import volume_maps


def _flags() -> tuple[bool, bool]:
    return torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32


@pytest.fixture
def tf32_on() -> Iterator[None]:
    """TF32 allowed, as PyTorch allows it for cuDNN by default; the settings restored after."""
    saved = _flags()
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


class _Spy(nn.Module):
    """A local fusion network that records the TF32 flags at every forward pass."""

    def __init__(self, conv: type[nn.Module]) -> None:
        super().__init__()
        self.conv = conv(2, 1, 3, padding=1)
        self.seen: set[tuple[bool, bool]] = set()

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        self.seen.add(_flags())
        return torch.tanh(self.conv(torch.cat((a, b), dim=1)))


@pytest.mark.usefixtures("tf32_on")
def test_flags_are_off_inside_and_restored_after() -> None:
    @without_tf32
    def inner() -> tuple[bool, bool]:
        with exact_float32():  # nested: the outer block still restores
            pass
        return _flags()

    assert inner() == (False, False)
    assert _flags() == (True, True)


@pytest.mark.usefixtures("tf32_on")
def test_concurrent_computations_restore_once_the_last_ends() -> None:
    first_inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        with exact_float32():
            first_inside.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    first_inside.wait(10)
    with exact_float32():
        pass
    assert torch.backends.cudnn.allow_tf32 is False  # the first computation still runs
    release.set()
    thread.join(10)
    assert torch.backends.cudnn.allow_tf32 is True


@pytest.mark.usefixtures("tf32_on")
def test_engine_entry_points_run_the_network_without_tf32() -> None:
    images = [torch.rand(1, 1, 12, 12) for _ in range(2)]
    flat = _Spy(nn.Conv2d).eval()
    PixelJacobian(flat, strategy="crop").explain(images, (5, 6))
    compute_maps(flat, images)
    volumes = [torch.rand(1, 1, 6, 6, 6) for _ in range(2)]
    deep = _Spy(nn.Conv3d).eval()
    volume_maps(deep, volumes)
    assert flat.seen == {(False, False)}
    assert deep.seen == {(False, False)}
    assert _flags() == (True, True)
