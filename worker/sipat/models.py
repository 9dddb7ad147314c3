"""Classifiers that take images in [0, 1] and normalise inside, plus a name registry.

Each model exposes `cam_layer`, the module whose output is the last convolutional stage,
so Grad-CAM (salience.py) works on any of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

MODEL_NAMES = ("small_cnn", "preact_resnet18", "resnet18", "resnet50")


class Normalized(nn.Module):
    """(x - mean) / std with per-channel buffers, then the wrapped network."""

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.net = net
        self.register_buffer(
            "mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1)
        )
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    @property
    def cam_layer(self) -> nn.Module:
        return self.net.cam_layer

    def forward(self, x: Tensor) -> Tensor:
        return self.net((x - self.mean) / self.std)


class SmallCNN(nn.Module):
    """Three conv-BN-ReLU blocks (two max-pools) and a linear head: for tests and CPU runs."""

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 32):
        super().__init__()
        w = width

        def block(c_in: int, c_out: int) -> list[nn.Module]:
            return [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
            ]

        self.features = nn.Sequential(
            *block(in_channels, w),
            nn.MaxPool2d(2),
            *block(w, 2 * w),
            nn.MaxPool2d(2),
            *block(2 * w, 4 * w),
        )
        self.head = nn.Linear(4 * w, num_classes)

    @property
    def cam_layer(self) -> nn.Module:
        return self.features

    def forward(self, x: Tensor) -> Tensor:
        return self.head(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


class PreActBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.shortcut = (
            nn.Conv2d(c_in, c_out, 1, stride, bias=False) if stride != 1 or c_in != c_out else None
        )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        short = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + short


class PreActResNet18(nn.Module):
    """PreAct ResNet-18 (He et al. 2016), the CIFAR-style network of the AT literature."""

    def __init__(self, num_classes: int, in_channels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        layers, c_in = [], 64
        for c_out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers.append(
                nn.Sequential(PreActBlock(c_in, c_out, stride), PreActBlock(c_out, c_out, 1))
            )
            c_in = c_out
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(512)
        self.linear = nn.Linear(512, num_classes)

    @property
    def cam_layer(self) -> nn.Module:
        return self.bn  # last conv stage, after its final normalisation

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn(self.layers(self.conv1(x))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


class TorchvisionResNet(nn.Module):
    """torchvision ResNet-18/50, randomly initialised (weights=None: nothing is downloaded)."""

    def __init__(self, name: str, num_classes: int, in_channels: int, image_size: int):
        super().__init__()
        ctor = {"resnet18": torchvision.models.resnet18, "resnet50": torchvision.models.resnet50}
        net = ctor[name](weights=None, num_classes=num_classes)
        if image_size < 96:  # small images: CIFAR-style stem keeps spatial resolution
            net.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
            net.maxpool = nn.Identity()
        elif in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.net = net

    @property
    def cam_layer(self) -> nn.Module:
        return self.net.layer4

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def build_model(
    name: str,
    num_classes: int,
    in_channels: int = 3,
    image_size: int = 32,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Normalized:
    """A classifier by registry name, with normalisation inside (defaults: mean 0.5, std 0.25)."""
    if name == "small_cnn":
        net: nn.Module = SmallCNN(num_classes, in_channels)
    elif name == "preact_resnet18":
        net = PreActResNet18(num_classes, in_channels)
    elif name in ("resnet18", "resnet50"):
        net = TorchvisionResNet(name, num_classes, in_channels, image_size)
    else:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)}")
    mean = list(mean) if mean is not None else [0.5] * in_channels
    std = list(std) if std is not None else [0.25] * in_channels
    return Normalized(net, mean, std)
