"""The four fusion networks studied in the FuseVis paper.

Each class reproduces the authors' layer structure and parameter names exactly (see
``fusevis-paper/README.md``), so that their checkpoints load without renaming. Every model
is called as ``model(x1, x2) -> fused`` on (B, 1, H, W) tensors; all are fully
convolutional with 'same' padding, so any image size works.
"""

from __future__ import annotations

import torch
from torch import nn

from fusevis.models.blocks import conv_bn_act, conv_chain


class FunFuseAn(nn.Module):
    """FunFuseAn: low-/high-frequency branches per input and a max-ratio fusion rule.

    Per input a low-frequency branch (MRI 9×9, PET 7×7, 1→16) and a high-frequency branch
    (MRI 3×3 convs 1→16→32→64; PET 5×5, 5×5, 3×3), each conv with BatchNorm and
    LeakyReLU(0.2). The high-frequency features fuse as h = max(h1, h2) / (h1 + h2); a 5×5
    reconstruction 64→32→16 follows; g = (g1 + g2 + recon(h)) / 3; a last 5×5 conv 16→1 and
    tanh give the fused image.
    """

    num_inputs = 2

    def __init__(self) -> None:
        super().__init__()
        self.mri_lf = conv_chain([1, 16], [9])
        self.mri_hf = conv_chain([1, 16, 32, 64], [3, 3, 3])
        self.pet_lf = conv_chain([1, 16], [7])
        self.pet_hf = conv_chain([1, 16, 32, 64], [5, 5, 3])
        self.recon1 = conv_chain([64, 32, 16], [5, 5])
        self.recon2 = nn.Sequential(nn.Conv2d(16, 1, 5, padding=2))

    def forward(self, mri: torch.Tensor, pet: torch.Tensor) -> torch.Tensor:
        """Fuse an MRI and a PET image."""
        h1, h2 = self.mri_hf(mri), self.pet_hf(pet)
        fused_high = torch.maximum(h1, h2) / (h1 + h2)
        g = (self.mri_lf(mri) + self.pet_lf(pet) + self.recon1(fused_high)) / 3
        return torch.tanh(self.recon2(g))


class MaskNet(nn.Module):
    """MaskNet: a dense encoder on the concatenated inputs and a plain decoder.

    Four 3×3 encoder layers with 48 channels, each fed the concatenation of all earlier
    outputs (2→48, 48→48, 96→48, 144→48), then 3×3 decoder layers 192→192→128→64→1; every
    conv with BatchNorm and LeakyReLU(0.2); tanh at the end.
    """

    num_inputs = 2

    def __init__(self) -> None:
        super().__init__()
        act = nn.LeakyReLU
        self.layer1 = conv_bn_act(2, 48, 3, act(0.2))
        self.layer2 = conv_bn_act(48, 48, 3, act(0.2))
        self.layer3 = conv_bn_act(96, 48, 3, act(0.2))
        self.layer4 = conv_bn_act(144, 48, 3, act(0.2))
        self.layer5 = conv_bn_act(192, 192, 3, act(0.2))
        self.layer6 = conv_bn_act(192, 128, 3, act(0.2))
        self.layer7 = conv_bn_act(128, 64, 3, act(0.2))
        self.layer8 = conv_bn_act(64, 1, 3, act(0.2))

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """Fuse two images."""
        f1 = self.layer1(torch.cat((x1, x2), dim=1))
        f2 = self.layer2(f1)
        f3 = self.layer3(torch.cat((f1, f2), dim=1))
        f4 = self.layer4(torch.cat((f1, f2, f3), dim=1))
        out = self.layer8(self.layer7(self.layer6(self.layer5(torch.cat((f1, f2, f3, f4), 1)))))
        return torch.tanh(out)


class DeepFuseBlock(nn.Module):
    """One DeepFuse layer: a ``main`` Sequential of conv, BatchNorm and activation."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, act: nn.Module) -> None:
        super().__init__()
        self.main = conv_bn_act(in_channels, out_channels, kernel, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the layer."""
        return self.main(x)


class DeepFuse(nn.Module):
    """DeepFuse: a shared two-layer encoder per input, features added, a decoder.

    Encoder (shared): 5×5 1→16 BN LeakyReLU, 7×7 16→32 BN ReLU. Fusion: sum of the two
    feature maps. Decoder: 7×7 32→32 and 5×5 32→16 (BN LeakyReLU), 5×5 16→1 BN tanh.
    LeakyReLU uses PyTorch's default slope 0.01, as the authors' checkpoint records.
    """

    num_inputs = 2

    def __init__(self) -> None:
        super().__init__()
        self.layer1 = DeepFuseBlock(1, 16, 5, nn.LeakyReLU())
        self.layer2 = DeepFuseBlock(16, 32, 7, nn.ReLU())
        self.layer4 = DeepFuseBlock(32, 32, 7, nn.LeakyReLU())
        self.layer5 = DeepFuseBlock(32, 16, 5, nn.LeakyReLU())
        self.layer6 = DeepFuseBlock(16, 1, 5, nn.Tanh())

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """Fuse two images."""
        fused = self.layer2(self.layer1(x1)) + self.layer2(self.layer1(x2))
        return self.layer6(self.layer5(self.layer4(fused)))


def _relu_conv_group(first_relu: bool, count: int, out_channels: int = 48) -> nn.Sequential:
    layers: list[nn.Module] = []
    for index in range(count):
        if index > 0 or first_relu:
            layers.append(nn.ReLU())
        cin = 2 if (index == 0 and not first_relu) else 48
        cout = out_channels if index == count - 1 else 48
        layers.append(nn.Conv2d(cin, cout, 3, padding=1))
    return nn.Sequential(*layers)


class DeepPedestrian(nn.Module):
    """DeepPedestrian: 3×3 convs with 48 channels, ReLUs and two residual sums, no BN.

    conv1 (4 convs, from the 2 concatenated inputs), conv2–conv4 (ReLU, then 4 convs each
    preceded by a ReLU), conv5 (ReLU, conv 48→1); x2 = x1 + conv2(x1), x4 = conv3(x2),
    fused = conv5(x4 + conv4(x4)). No output activation.
    """

    num_inputs = 2

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = _relu_conv_group(first_relu=False, count=4)
        self.conv2 = _relu_conv_group(first_relu=True, count=4)
        self.conv3 = _relu_conv_group(first_relu=True, count=4)
        self.conv4 = _relu_conv_group(first_relu=True, count=4)
        self.conv5 = _relu_conv_group(first_relu=True, count=1, out_channels=1)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """Fuse two images."""
        f1 = self.conv1(torch.cat((x1, x2), dim=1))
        f4 = self.conv3(f1 + self.conv2(f1))
        return self.conv5(f4 + self.conv4(f4))
