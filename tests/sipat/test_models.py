"""Every registered model: shapes, Grad-CAM layer, gradients, 1-channel inputs (CPU, small).

Sizes are the smallest that exercise each network: 32 px, Inception-v3 75 px (its minimum)
for Grad-CAM, 139 px elsewhere (there its ImageNet stem makes it the cheaper size).
WRN-34-10 runs as a width-1 instance of the same class (depth 34); the registered full-width
model is only built (on the meta device), to check its parameter count.
"""

from pathlib import Path

import pytest
import torch

from worker.sipat import config
from worker.sipat.attacks import eval_mode
from worker.sipat.config import ConfigError, TrainConfig
from worker.sipat.models import MODEL_NAMES, Normalized, WideResNet, build_model
from worker.sipat.salience import grad_cam, normalize_per_image
from worker.sipat.train import train

ROOT = Path(__file__).resolve().parents[2]
NUM_CLASSES = 5
BATCH = 2


def _size(name: str) -> int:
    return 75 if name == "inception_v3" else 32


# Inception-v3's cheapest size: from 139 px its ImageNet stem runs, a quarter of the work of
# 75 px with the small stem. Used where the small stem adds nothing to what is checked.
INCEPTION_CHEAP = 139


def _build(name: str, in_channels: int = 3, image_size: int | None = None) -> Normalized:
    torch.manual_seed(0)
    size = image_size or _size(name)
    if name == "wrn34_10":  # the same class, narrow: widen factor 1 instead of 10
        net = WideResNet(NUM_CLASSES, in_channels, depth=34, widen_factor=1)
        return Normalized(net, [0.5] * in_channels, [0.25] * in_channels)
    return build_model(name, NUM_CLASSES, in_channels, size)


def _images(name: str, channels: int = 3, size: int | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    s = size or _size(name)
    return torch.rand(BATCH, channels, s, s, generator=g)


def _cam_map(model: Normalized, x: torch.Tensor) -> torch.Tensor:
    """The output of model.cam_layer for x (eval mode, no gradient)."""
    store = {}
    handle = model.cam_layer.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    try:
        with torch.no_grad(), eval_mode(model):
            model(x)
    finally:
        handle.remove()
    return store["a"]


@pytest.fixture(scope="module", autouse=True)
def _native_convolutions():
    """PyTorch's own CPU convolutions instead of oneDNN's for this file (then restored):
    on batches of 2, oneDNN's per-shape setup makes these models 2 to 5 times slower.
    What is tested (shapes, maps, gradients) does not depend on the kernels."""
    enabled = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = enabled


@pytest.fixture(scope="module")
def built():
    """One 3-channel instance per model and size, built on first use and shared."""
    cache: dict[tuple[str, int | None], Normalized] = {}

    def get(name: str, size: int | None = None) -> Normalized:
        if (name, size) not in cache:
            cache[name, size] = _build(name, image_size=size)
        return cache[name, size]

    return get


def test_registry_matches_the_contract_and_the_form_has_no_copy():
    assert MODEL_NAMES == config.MODELS  # runconfig lists them without importing torch
    from runconfig import choices

    assert tuple(choices()["model"]) == MODEL_NAMES  # what the run form offers (the API)
    js = (ROOT / "frontend" / "pages" / "runs.js").read_text()
    assert "resnet18" not in js and "wrn34_10" not in js  # no copy of the list


def test_unknown_name_refused():
    with pytest.raises(ValueError, match="unknown model 'vgg16'.*wrn34_10"):
        build_model("vgg16", NUM_CLASSES)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_train_mode_logits_and_gradient_reaches_the_input(name, built):
    size = INCEPTION_CHEAP if name == "inception_v3" else None  # 75 px: the eval test
    model = built(name, size).train()
    x = _images(name, size=size).requires_grad_(True)
    logits = model(x)
    assert isinstance(logits, torch.Tensor)  # Inception: no aux-logits tuple in train mode
    assert logits.shape == (BATCH, NUM_CLASSES) and torch.isfinite(logits).all()
    # a logit, not the loss: a fresh network's softmax can saturate and zero the gradient
    (g,) = torch.autograd.grad(logits[:, 0].sum(), x)
    assert torch.isfinite(g).all() and (g.flatten(1).abs().sum(1) > 0).all()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_eval_mode_logits_cam_layer_and_grad_cam(name, built):
    """grad_cam runs the model in eval mode: its logits and the cam_layer map are caught
    on the way (forward hooks), so one forward and backward checks all three."""
    model, x = built(name), _images(name)
    assert any(m is model.cam_layer for m in model.modules())
    store = {}
    hooks = [
        model.register_forward_hook(lambda m, i, o: store.__setitem__("logits", o)),
        model.cam_layer.register_forward_hook(lambda m, i, o: store.__setitem__("act", o)),
    ]
    try:
        cam = grad_cam(model, x)
    finally:
        for h in hooks:
            h.remove()
    logits, act = store["logits"], store["act"]
    assert isinstance(logits, torch.Tensor)
    assert logits.shape == (BATCH, NUM_CLASSES) and torch.isfinite(logits).all()
    assert act.dim() == 4 and act.shape[0] == BATCH
    assert act.shape[2] >= 2 and act.shape[3] >= 2, f"{name}: map {tuple(act.shape)}"
    assert cam.shape == (BATCH, 1, *x.shape[-2:]) and torch.isfinite(cam).all()
    s = normalize_per_image(cam)
    assert s.min() >= 0 and s.max() <= 1
    assert (s.flatten(1).amax(1) == 1).all(), "a map is constant"
    # the two images differ, and so do their maps (raw and normalised)
    assert not torch.allclose(cam[0], cam[1]) and not torch.allclose(s[0], s[1])


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_one_channel_input(name):
    # Inception: the small stem's 1-channel conv is checked below (138 px)
    size = INCEPTION_CHEAP if name == "inception_v3" else _size(name)
    model = _build(name, in_channels=1, image_size=size)
    x = _images(name, channels=1, size=size)
    with torch.no_grad(), eval_mode(model):
        logits = model(x)
    assert logits.shape == (BATCH, NUM_CLASSES) and torch.isfinite(logits).all()


@pytest.mark.parametrize("name", ["resnet18", "densenet121"])
def test_cifar_stem_below_96_px(name):
    """Built only: 95 px gets the 3x3 stride-1 stem without max-pool, 96 px ImageNet's
    (1-channel: the first convolution is replaced in both)."""
    for size, kernel, pool in ((95, 3, torch.nn.Identity), (96, 7, torch.nn.MaxPool2d)):
        with torch.device("meta"):  # structure only
            net = build_model(name, NUM_CLASSES, 1, size).net.net
        conv, maxpool = (
            (net.features.conv0, net.features.pool0)
            if name == "densenet121"
            else (net.conv1, net.maxpool)
        )
        assert conv.in_channels == 1 and conv.kernel_size == (kernel, kernel)
        assert isinstance(maxpool, pool), (name, size)


def test_inception_stem_switches_at_139_px():
    """Built on the meta device (structure and output sizes only), 1-channel: up to 138 px
    the small stem (stride-1 first conv, no first max-pool) ending in 15x15, from 139 px
    ImageNet's, ending in 3x3."""
    stems = ((138, 1, torch.nn.Identity, 15), (139, 2, torch.nn.MaxPool2d, 3))
    for size, stride, pool, side in stems:
        with torch.device("meta"):
            model = build_model("inception_v3", NUM_CLASSES, 1, size)
            act = _cam_map(model, torch.empty(1, 1, size, size))
        conv = model.net.net.Conv2d_1a_3x3.conv
        assert conv.in_channels == 1 and conv.stride == (stride, stride)
        assert isinstance(model.net.net.maxpool1, pool), size
        assert act.shape[-2:] == (side, side), size


def test_wrn34_10_full_size_parameter_count():
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        model = build_model("wrn34_10", 10)
    net = model.net
    assert isinstance(net, WideResNet)
    assert net.linear.in_features == 640 and len(net.groups[0]) == 5  # 16*10; (34 - 4) / 6
    n = sum(p.numel() for p in model.parameters())
    assert n == 46_160_474  # the 46.2 M of the literature (10 classes)


def test_wrn_depth_must_be_6n_plus_4():
    with pytest.raises(ValueError, match="6 n \\+ 4"):
        WideResNet(10, depth=33)


@pytest.mark.parametrize("size", [32, 74])
def test_inception_refuses_small_images(size):
    with pytest.raises(ValueError, match=f"at least 75 px.*got {size} px") as info:
        build_model("inception_v3", NUM_CLASSES, 3, size)
    assert isinstance(info.value, ConfigError) and info.value.field == "image_size"


def test_train_reports_inception_size_as_config_error(tiny_data, tmp_path):
    """train() lets the refusal through as a ConfigError: the CLI prints it as a config
    error and the worker as the run's error, not as a crash inside the model."""
    cfg = TrainConfig(model="inception_v3", method="standard", epochs=1)
    with pytest.raises(ConfigError, match="image_size: inception_v3 needs images of at least 75"):
        train(cfg, tmp_path / "run", data=tiny_data, progress=False)
