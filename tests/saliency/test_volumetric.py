"""3-D networks: per-voxel rows, guidance and influence volumes against dense autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.autograd.functional import jacobian

from fusevis.errors import InputError, ModelError
from fusevis.io.loading import volume_slice
from fusevis.io.readers import RawArray
from fusevis.saliency.boxes import GridField
from fusevis.saliency.volumetric import (
    VoxelJacobian,
    guidance_volumes,
    influence_volumes,
    row_planes,
    volume_maps,
)

SHAPE = (12, 14, 10)


class PooledNet(nn.Module):
    """Two inputs, asymmetric replication padding, BatchNorm, a pool and a trilinear way up."""

    def __init__(self) -> None:
        super().__init__()
        self.pad = nn.ReplicationPad3d((2, 0, 0, 2, 1, 1))  # z before 2, y after 2, x 1 and 1
        self.enc = nn.Conv3d(1, 3, 3)
        self.bn = nn.BatchNorm3d(3)
        self.pool = nn.MaxPool3d(2)
        self.mid = nn.Conv3d(3, 3, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2, mode="trilinear")
        self.dec = nn.Conv3d(6, 1, 3, padding=1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa = torch.relu(self.bn(self.enc(self.pad(a))))
        fb = nn.functional.leaky_relu(self.bn(self.enc(self.pad(b))), 0.1)
        features = fa + fb
        coarse = self.up(torch.tanh(self.mid(self.pool(features))))
        return torch.sigmoid(self.dec(torch.cat([features, coarse], dim=1)))


class SmallNet(nn.Module):
    """A small field (reach 2, 2, 3): voxels share colours on a 9x10x7 volume."""

    def __init__(self) -> None:
        super().__init__()
        self.pad = nn.ConstantPad3d((2, 0, 1, 1, 1, 1), 0.5)
        self.a = nn.Conv3d(1, 2, 3)
        self.b = nn.Conv3d(1, 2, 3, padding=1)
        self.mix = nn.Conv3d(2, 1, 3, padding=1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        both = torch.maximum(torch.tanh(self.a(self.pad(a))), nn.functional.elu(self.b(b)))
        return self.mix(both)


def _double(net: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    model = net.double()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm3d):
            with torch.no_grad():
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
    return model.eval()


def _volumes(shape: tuple[int, ...], seed: int = 1) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.rand(shape, generator=generator, dtype=torch.float64) for _ in range(2)]


def _dense(model: nn.Module, volumes: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per input, the whole (V, V) Jacobian of the fused volume, by autograd."""
    size = volumes[0].numel()
    found = jacobian(
        lambda a, b: model(a[None, None], b[None, None])[0, 0], tuple(volumes), vectorize=True
    )
    return [j.reshape(size, size) for j in found]


@pytest.fixture(scope="module")
def pooled() -> nn.Module:
    torch.manual_seed(0)
    return _double(PooledNet())


def test_rows_equal_whole_volume_gradients_at_corners_edges_and_inside(pooled: nn.Module) -> None:
    shape = (26, 28, 24)  # the field is 20 voxels wide: crops smaller than the volume
    a, b = _volumes(shape)
    jac = VoxelJacobian(pooled, [a, b])
    assert jac.field.stride == (2, 2, 2)
    leaves = [x[None, None].clone().requires_grad_(True) for x in (a, b)]
    output = pooled(*leaves)[0, 0]
    voxels = [
        (0, 0, 0),
        (25, 27, 23),
        (0, 27, 12),
        (25, 0, 23),
        (13, 14, 11),
        (12, 15, 13),
        (3, 0, 7),
    ]
    for voxel in voxels:
        expected = torch.autograd.grad(output[voxel], leaves, retain_graph=True)
        rows = jac.row(voxel)
        box = jac.box(voxel)
        assert all(n < m for n, m in zip(box.shape, shape, strict=True))  # a crop
        assert all(s % 2 == 0 for s in box.start)  # on the pooled grid
        for row, grad in zip(rows, expected, strict=True):
            assert row.shape == shape
            assert np.abs(grad[0, 0].numpy()).max() > 0
            np.testing.assert_allclose(row, grad[0, 0].numpy(), rtol=0, atol=1e-12)
    assert jac.verify([(0, 0, 0), (13, 14, 11)]) < 1e-12


def test_guidance_and_influence_equal_the_dense_jacobian_with_shared_colours() -> None:
    torch.manual_seed(0)
    model = _double(SmallNet())
    shape = (9, 10, 7)  # the dense Jacobian is 630 x 630
    volumes = _volumes(shape, seed=2)
    maps = influence_volumes(model, volumes)
    assert maps.field.lo == (-2, -2, -3) and maps.field.hi == (2, 2, 2)
    assert "5x5x6 backward passes" in maps.method  # 150 passes for 630 voxels
    dense = _dense(model, volumes)
    for k, matrix in enumerate(dense):
        diagonal = matrix.diagonal().reshape(shape).numpy()
        np.testing.assert_allclose(maps.guidance[k][0], diagonal, rtol=0, atol=1e-13)
        total = matrix.abs().sum(dim=1).reshape(shape).numpy()
        np.testing.assert_allclose(maps.influence[k], total, rtol=1e-12, atol=1e-13)
    fused = model(*(v[None, None] for v in volumes))[0, 0].detach().numpy()
    np.testing.assert_allclose(maps.fused, fused, rtol=0, atol=1e-13)
    share = maps.share
    assert share is not None
    np.testing.assert_allclose(share[0] + share[1], 1.0, atol=1e-6)
    tiled = guidance_volumes(model, volumes, tile=5)
    assert "3x3x4 backward passes" in tiled.method and "8 tile(s)" in tiled.method
    for k in range(2):
        np.testing.assert_allclose(tiled.guidance[k], maps.guidance[k], rtol=0, atol=1e-13)


def test_pooled_network_guidance_and_influence_on_a_small_volume(pooled: nn.Module) -> None:
    shape = (8, 6, 6)
    volumes = _volumes(shape, seed=3)
    maps = volume_maps(pooled, volumes, influence=True, tile=4)
    dense = _dense(pooled, volumes)
    for k, matrix in enumerate(dense):
        np.testing.assert_allclose(
            maps.guidance[k][0], matrix.diagonal().reshape(shape).numpy(), rtol=0, atol=1e-13
        )
        np.testing.assert_allclose(
            maps.influence[k], matrix.abs().sum(dim=1).reshape(shape).numpy(), rtol=1e-12
        )


def test_multichannel_inputs_and_numpy_volumes() -> None:
    torch.manual_seed(0)
    model = nn.Conv3d(2, 1, 3, padding=1).double().eval()

    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = model

        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return self.conv(a) * b[:, :1]

    net = Two()
    generator = torch.Generator().manual_seed(4)
    a = torch.rand((2, 5, 6, 4), generator=generator, dtype=torch.float64)
    b = torch.rand((1, 1, 5, 6, 4), generator=generator, dtype=torch.float64)
    rows = VoxelJacobian(net, [a.numpy(), b]).row((2, 3, 1))
    assert rows[0].shape == (2, 5, 6, 4) and rows[1].shape == (1, 5, 6, 4)
    leaves = [a[None].clone().requires_grad_(True), b.clone().requires_grad_(True)]
    expected = torch.autograd.grad(net(*leaves)[0, 0, 2, 3, 1], leaves)
    np.testing.assert_allclose(rows[0], expected[0][0].numpy(), atol=1e-14)
    np.testing.assert_allclose(rows[1], expected[1][0].numpy(), atol=1e-14)


def test_a_module_the_tracer_does_not_know_is_one_line_naming_it() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.odd = nn.LPPool3d(2, 1)  # |x|: not in the tracer's table
            self.conv = nn.Conv3d(1, 1, 3, padding=1)

        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return self.conv(self.odd(a) + b)

    volumes = _volumes((4, 4, 4))
    with pytest.raises(ModelError) as found:
        VoxelJacobian(Net(), volumes)
    message = str(found.value)
    assert "\n" not in message
    assert "module LPPool3d (odd) is not known to the tracer" in message
    assert "test_volumetric.py" in message  # the model's source line
    # a field given by the caller replaces the trace
    given = GridField((-1, -1, -1), (1, 1, 1), source="user")
    rows = VoxelJacobian(Net().double(), volumes, receptive_field=given).row((1, 2, 3))
    assert rows[0][1, 2, 3] != 0


def test_a_network_that_mixes_the_whole_volume_is_refused_in_one_line() -> None:
    class Global(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm = nn.InstanceNorm3d(1)

        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return self.norm(a) + b

    with pytest.raises(ModelError, match=r"^Global is not local.*InstanceNorm3d") as found:
        guidance_volumes(Global(), _volumes((4, 4, 4)))
    assert "\n" not in str(found.value)


def test_bad_voxels_and_volumes_are_one_line_input_errors(pooled: nn.Module) -> None:
    jac = VoxelJacobian(pooled, _volumes(SHAPE))
    with pytest.raises(InputError, match=r"voxel \(12, 0, 0\) is outside the 12x14x10 volume"):
        jac.row((12, 0, 0))
    with pytest.raises(InputError, match="input 2: size"):
        VoxelJacobian(pooled, [torch.zeros(SHAPE), torch.zeros((12, 14, 9))])
    with pytest.raises(InputError, match="expected a 3-D volume"):
        VoxelJacobian(pooled, [torch.zeros((12, 14)), torch.zeros((12, 14))])


def test_row_planes_cut_as_volume_slice_shows_slices() -> None:
    row = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    voxel = (1, 3, 2)
    raw = RawArray(row, rotate_slices=True)
    axial, coronal, sagittal = row_planes(row, voxel)
    for plane, axis in ((axial, 2), (coronal, 1), (sagittal, 0)):
        expected = volume_slice(raw, "row", voxel[axis], axis).pixels
        np.testing.assert_array_equal(plane, expected)
    flat = row_planes(row, voxel, rotate=False)
    np.testing.assert_array_equal(flat[0], row[:, :, 2])
    np.testing.assert_array_equal(flat[2], row[1])
