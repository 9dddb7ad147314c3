"""The GPU path on a GPU: skipped without CUDA; `scripts/gpu_check.sh` runs these with the
GPU benchmark. tests/sipat/test_precision.py checks on CPU what does not need a GPU."""

import pytest
import torch

from worker.sipat import TrainConfig, TrainingCancelled, train
from worker.sipat.attacks import pgd_attack
from worker.sipat.benchmark_data import salience_benchmark
from worker.sipat.data import MemoryBatches
from worker.sipat.methods import sip_step_mask
from worker.sipat.models import build_model

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
DEVICE = "cuda:0"


@pytest.fixture(scope="module")
def data():
    return salience_benchmark(n_train=256, n_test=64, image_size=32, region=10, seed=1)


def _cfg(**kw):
    base = dict(
        method="sip_at",
        model="preact_resnet18",
        epochs=2,
        batch_size=64,
        lr=0.05,
        steps=3,
        eval_subset=32,
        eval_steps=5,
        eval_eps=[8 / 255],
        autoattack_n=16,
        seed=7,
        device=DEVICE,
    )
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_attack_invariants_on_the_gpu(precision):
    torch.manual_seed(0)
    model = build_model("preact_resnet18", 4, 3, 32).to(DEVICE)
    model = model.to(memory_format=torch.channels_last).set_precision(precision)
    g = torch.Generator(device=DEVICE).manual_seed(0)
    x = torch.rand(64, 3, 32, 32, device=DEVICE, generator=g)
    y = torch.randint(0, 4, (64,), device=DEVICE, generator=g)
    s = (torch.rand(64, 1, 32, 32, device=DEVICE, generator=g) < 0.4).float()
    m = sip_step_mask(s, torch.ones(64, dtype=torch.bool, device=DEVICE), 0.5)
    x_adv = pgd_attack(model, x, y, 8 / 255, 2 / 255, 10, step_mask=m, generator=g)
    assert x_adv.dtype == torch.float32
    assert bool(((x_adv - x).abs() <= 8 / 255 + 1e-7).all())
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert torch.equal(x_adv * (1 - m), x * (1 - m))
    assert (x_adv - x).abs().max() > 0


def test_a_bf16_run_on_the_gpu_trains_and_records_the_device(data, tmp_path):
    r = train(_cfg(precision="bf16", epochs=3), tmp_path, data=data, progress=False)
    rt = r["runtime"]
    assert rt["device"] == DEVICE and rt["precision"] == "bf16" and rt["channels_last"]
    assert rt["device_name"] == torch.cuda.get_device_name(0) and rt["cudnn_benchmark"]
    losses = [h["train_loss"] for h in r["history"]]
    assert losses[-1] < losses[0]
    assert r["final"]["autoattack"]["n"] == 16


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_resume_on_the_gpu_equals_uninterrupted(precision, data, tmp_path):
    """Bit-exact with deterministic algorithms: model, optimiser, the CPU, device-generator
    and global CUDA RNG states all travel in the checkpoint."""
    cfg = _cfg(precision=precision, deterministic=True, autoattack_n=0)
    full = train(cfg, tmp_path / "full", data=data, progress=False)
    calls = {"n": 0}

    def stop_in_second_epoch():
        calls["n"] += 1
        return calls["n"] > 256 // 64 + 1

    with pytest.raises(TrainingCancelled):
        train(cfg, tmp_path / "cut", data=data, progress=False, should_stop=stop_in_second_epoch)
    ck = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)
    assert "cuda" in ck["rng"]
    resumed = train(cfg, tmp_path / "cut", data=data, progress=False)
    assert resumed["history"] == full["history"]
    assert resumed["final"] == full["final"]


def test_channels_last_gives_the_same_logits(data):
    torch.manual_seed(0)
    model = build_model("resnet18", 4, 3, 32).to(DEVICE).eval()
    x = torch.rand(16, 3, 32, 32, device=DEVICE)
    ref = model(x)
    out = model.to(memory_format=torch.channels_last)(x)
    assert torch.allclose(ref, out, atol=1e-3, rtol=1e-3)


def test_pinned_non_blocking_batches_equal_the_cpu_ones(data):
    gen_a, gen_b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    common = dict(augment=True, padding=4, hflip=True)
    on_gpu = MemoryBatches(data.train, 64, device=DEVICE, **common).epoch(0, gen_a)
    on_cpu = MemoryBatches(data.train, 64, device="cpu", **common).epoch(0, gen_b)
    for (xa, sa, _, ya), (xb, sb, _, yb) in zip(on_gpu, on_cpu, strict=True):
        assert xa.is_cuda and torch.equal(xa.cpu(), xb) and torch.equal(sa.cpu(), sb)
        assert torch.equal(ya.cpu(), yb)


def test_compiled_training_on_the_gpu(data, tmp_path):
    r = train(
        _cfg(method="pgd_at", compile=True, epochs=1, autoattack_n=0, precision="bf16"),
        tmp_path,
        data=data,
        progress=False,
    )
    assert r["runtime"]["compiled"], r["runtime"].get("compile_fallback")
    assert torch.isfinite(torch.tensor(r["history"][0]["train_loss"]))
