"""Classifiers that take images in [0, 1] and normalise inside, plus a name registry.

Each model exposes `cam_layer`, the module whose output is the last convolutional feature
map before global pooling, so Grad-CAM (salience.py) works on any of them.

The registry (MODEL_NAMES, filled at the bottom of this file from build_model's table)
must equal config.MODELS, which lists the same names without importing torch;
tests/sipat/test_models.py checks that (the run form gets the list from the API).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ConfigError

# torchvision is imported by the builders of its networks only: importing it loads
# torch._dynamo (about 2.8 CPU-seconds), which every worker and rank process paid at start

# torchvision's documented minimum input for Inception-v3 (pixels per side)
INCEPTION_MIN_SIZE = 75


class Normalized(nn.Module):
    """(x - mean) / std with per-channel buffers, then the wrapped network."""

    # fp16 input gradients are taken of the loss times this: small gradients would flush to
    # zero in fp16, and the attacks use their sign (or, IGD, their direction) only
    FP16_GRAD_SCALE = 1024.0

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.net = net
        self.register_buffer(
            "mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1)
        )
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))
        self.autocast_dtype: torch.dtype | None = None  # None: fp32

    @property
    def cam_layer(self) -> nn.Module:
        return self.net.cam_layer

    def set_precision(self, precision: str) -> Normalized:
        """fp32, bf16 or fp16: the dtype the network's forward runs in under autocast.

        The input, its normalisation and the returned logits stay fp32, so losses, input
        gradients and every attack's perturbation are fp32 whatever the precision.
        """
        dtypes = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
        if precision not in dtypes:
            raise ValueError(f"unknown precision {precision!r}: fp32, bf16 or fp16")
        self.autocast_dtype = dtypes[precision]
        return self

    @property
    def input_grad_scale(self) -> float:
        return self.FP16_GRAD_SCALE if self.autocast_dtype == torch.float16 else 1.0

    def forward(self, x: Tensor) -> Tensor:
        z = (x - self.mean) / self.std
        if self.autocast_dtype is None:
            return self.net(z)
        with torch.autocast(z.device.type, dtype=self.autocast_dtype):
            out = self.net(z)
        return out.float()


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


class WideResNet(nn.Module):
    """Wide ResNet (Zagoruyko & Komodakis 2016), CIFAR stem, no dropout.

    depth = 6 n + 4: a 3x3 conv to 16 channels, then three groups of n pre-activation
    blocks (PreActBlock) of 16 k, 32 k and 64 k channels (k = widen_factor) at strides
    1, 2, 2, then BatchNorm, ReLU, global average pooling and a linear head. WRN-34-10
    (registered as wrn34_10) is the network of TRADES, PART and most of the adversarial
    training literature: 46.16 M parameters for 10 classes. The initialisation is the
    usual one for it (He normal, fan-out, on every conv; BN 1 / 0; linear bias 0).

    cam_layer: `act`, the ReLU after the final BatchNorm, i.e. the last group's feature
    map after its final normalisation and activation (64 k channels at 1/4 of the input).
    """

    def __init__(
        self, num_classes: int, in_channels: int = 3, depth: int = 34, widen_factor: int = 10
    ):
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6 n + 4 with n >= 1, got {depth}")
        if widen_factor < 1:
            raise ValueError(f"WideResNet widen_factor must be >= 1, got {widen_factor}")
        n = (depth - 4) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        groups, c_in = [], 16
        k = widen_factor
        for c_out, stride in ((16 * k, 1), (32 * k, 2), (64 * k, 2)):
            blocks = [PreActBlock(c_in, c_out, stride)]
            blocks += [PreActBlock(c_out, c_out, 1) for _ in range(n - 1)]
            groups.append(nn.Sequential(*blocks))
            c_in = c_out
        self.groups = nn.Sequential(*groups)
        self.bn = nn.BatchNorm2d(c_in)
        self.act = nn.ReLU()
        self.linear = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    @property
    def cam_layer(self) -> nn.Module:
        return self.act

    def forward(self, x: Tensor) -> Tensor:
        out = self.act(self.bn(self.groups(self.conv1(x))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


class TorchvisionResNet(nn.Module):
    """torchvision ResNet-18/50, randomly initialised (weights=None: nothing is downloaded)."""

    def __init__(self, name: str, num_classes: int, in_channels: int, image_size: int):
        super().__init__()
        from torchvision import models

        ctor = {"resnet18": models.resnet18, "resnet50": models.resnet50}
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


class TorchvisionDenseNet(nn.Module):
    """torchvision DenseNet-121 (Huang et al. 2017), randomly initialised (weights=None).

    Below 96 px the ImageNet stem (7x7 stride-2 conv, stride-2 max-pool) becomes a 3x3
    stride-1 conv without the pool, as for TorchvisionResNet: 32 px images end in a 4x4
    map instead of 1x1. Other in_channels than 3 replace the first convolution.

    cam_layer: `act`, the ReLU after the final BatchNorm (`features.norm5`) of the last
    dense block, i.e. the last feature map after its final normalisation and activation.
    torchvision applies that ReLU as an in-place function inside its forward, which a
    forward hook cannot see (and an in-place op would overwrite the hooked tensor), so
    this wrapper runs features -> act -> pooling -> classifier itself; the parameters are
    torchvision's, under `net`.
    """

    def __init__(self, num_classes: int, in_channels: int, image_size: int):
        super().__init__()
        from torchvision import models

        net = models.densenet121(weights=None, num_classes=num_classes)
        width = net.features.conv0.out_channels
        if image_size < 96:  # small images: CIFAR-style stem keeps spatial resolution
            net.features.conv0 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
            net.features.pool0 = nn.Identity()
        elif in_channels != 3:
            net.features.conv0 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
        nn.init.kaiming_normal_(net.features.conv0.weight)  # torchvision's init for convs
        self.net = net
        self.act = nn.ReLU()

    @property
    def cam_layer(self) -> nn.Module:
        return self.act

    def forward(self, x: Tensor) -> Tensor:
        out = self.act(self.net.features(x))
        return self.net.classifier(F.adaptive_avg_pool2d(out, 1).flatten(1))


class TorchvisionInception(nn.Module):
    """torchvision Inception-v3 (Szegedy et al. 2016), randomly initialised (weights=None).

    aux_logits is off, so the forward returns plain logits in train and eval mode (the
    classifier's dropout, p = 0.5, is part of the architecture and stays). Inputs must be
    at least INCEPTION_MIN_SIZE (75) px per side, torchvision's minimum; smaller sizes are
    refused with a ConfigError (a ValueError) on `image_size`.

    The ImageNet stem divides the input by 32 with unpadded convolutions: a 75 px image
    ends in a 1x1 map (Grad-CAM then is one constant per image), and only from 139 px on
    in 3x3 or more (ResNet reaches 3x3 at 96 px, its threshold). So below 139 px the
    first conv (Conv2d_1a_3x3) gets stride 1 and the first max-pool goes, as in
    TorchvisionResNet's CIFAR-style stem: 75 px ends in 7x7 (about the 8x8 of 299 px),
    138 px in 15x15. Other in_channels than 3 replace the first convolution.

    cam_layer: `net.Mixed_7c`, the last Inception block, whose output (the concatenation
    of its branches, each ending in conv-BN-ReLU) is the last feature map before pooling.
    """

    full_stem_size = 139  # smallest size whose ImageNet-stem map is 3x3

    def __init__(self, num_classes: int, in_channels: int, image_size: int):
        super().__init__()
        if image_size < INCEPTION_MIN_SIZE:
            raise ConfigError(
                "image_size",
                f"inception_v3 needs images of at least {INCEPTION_MIN_SIZE} px per side, "
                f"got {image_size} px (set image_size to {INCEPTION_MIN_SIZE} or more)",
            )
        from torchvision import models

        net = models.inception_v3(
            weights=None, num_classes=num_classes, aux_logits=False, init_weights=False
        )
        small = image_size < self.full_stem_size
        if small or in_channels != 3:
            old = net.Conv2d_1a_3x3.conv
            conv = nn.Conv2d(in_channels, old.out_channels, 3, 1 if small else 2, bias=False)
            net.Conv2d_1a_3x3.conv = conv
        if small:
            net.maxpool1 = nn.Identity()
        # torchvision's init_weights=True: conv and linear weights from N(0, 0.1) truncated
        # to [-2, 2], BatchNorm 1 / 0 (PyTorch's default). The cut lies 20 standard
        # deviations out, so a clamped normal is the same distribution, and ten times
        # faster to draw than trunc_normal_ (which takes seconds for these 22 M weights).
        with torch.no_grad():
            for m in net.modules():
                if isinstance(m, nn.Conv2d | nn.Linear):
                    m.weight.normal_(0.0, 0.1).clamp_(-2.0, 2.0)
        self.net = net

    @property
    def cam_layer(self) -> nn.Module:
        return self.net.Mixed_7c

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


_Builder = Callable[[int, int, int], nn.Module]  # (num_classes, in_channels, image_size)
_BUILDERS: dict[str, _Builder] = {
    "small_cnn": lambda n, c, _size: SmallCNN(n, c),
    "preact_resnet18": lambda n, c, _size: PreActResNet18(n, c),
    "wrn34_10": lambda n, c, _size: WideResNet(n, c, depth=34, widen_factor=10),
    "resnet18": lambda n, c, s: TorchvisionResNet("resnet18", n, c, s),
    "resnet50": lambda n, c, s: TorchvisionResNet("resnet50", n, c, s),
    "densenet121": lambda n, c, s: TorchvisionDenseNet(n, c, s),
    "inception_v3": lambda n, c, s: TorchvisionInception(n, c, s),
}
MODEL_NAMES = tuple(_BUILDERS)  # equals config.MODELS (tests/sipat/test_models.py)


def build_model(
    name: str,
    num_classes: int,
    in_channels: int = 3,
    image_size: int = 32,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Normalized:
    """A classifier by registry name, with normalisation inside (defaults: mean 0.5, std 0.25).

    Raises ValueError for an unknown name, and ConfigError (a ValueError) on image_size for
    an image size the network cannot take (inception_v3 below 75 px).
    """
    builder = _BUILDERS.get(name)
    if builder is None:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)}")
    net = builder(num_classes, in_channels, image_size)
    mean = list(mean) if mean is not None else [0.5] * in_channels
    std = list(std) if std is not None else [0.25] * in_channels
    return Normalized(net, mean, std)
