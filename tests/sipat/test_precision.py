"""Reduced precision (bf16, fp16 through autocast), torch.compile and the run's runtime record.

CPU autocast runs bf16 and fp16 kernels, so the invariants, training and resume of the GPU
path are checked here; tests/sipat/test_cuda.py repeats what needs a GPU.
"""

import hashlib
import json

import pytest
import torch

from worker.sipat import TrainConfig, TrainingCancelled, train
from worker.sipat.attacks import fgsm_rs_attack, n_fgsm_attack, pgd_attack
from worker.sipat.config import EVAL_ONLY, RUNTIME_ONLY
from worker.sipat.device import StepScaler, compile_model
from worker.sipat.methods import sip_step_mask

PRECISIONS = ("bf16", "fp16")


def _conv_output_dtypes(model, x):
    """dtypes of every convolution's output during one forward."""
    seen = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
        for m in model.modules()
        if isinstance(m, torch.nn.Conv2d)
    ]
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return set(seen)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_the_network_runs_in_the_precision_and_its_logits_are_fp32(tiny_model, precision):
    x = torch.rand(4, 3, 12, 12)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    assert _conv_output_dtypes(tiny_model, x) == {torch.float32}
    tiny_model.set_precision(precision)
    assert _conv_output_dtypes(tiny_model, x) == {dtype}
    assert tiny_model(x).dtype == torch.float32
    tiny_model.set_precision("fp32")
    assert _conv_output_dtypes(tiny_model, x) == {torch.float32}
    with pytest.raises(ValueError, match="unknown precision"):
        tiny_model.set_precision("fp8")


@pytest.mark.parametrize("precision", PRECISIONS)
def test_attack_invariants_hold_exactly_in_reduced_precision(tiny_model, precision):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, 12, 12, generator=g)
    x[:, :, :2] = 0.0  # pixels at the edges of [0, 1]
    x[:, :, -2:] = 1.0
    y = torch.randint(0, 4, (16,), generator=g)
    s = (torch.rand(16, 1, 12, 12, generator=g) < 0.4).float()
    has = torch.rand(16, generator=g) < 0.75
    m = sip_step_mask(s, has, 0.5)
    eps_map = torch.where(torch.rand(16, 1, 12, 12, generator=g) < 0.5, 8 / 255, 3 / 255)
    tiny_model.set_precision(precision)
    eps = 8 / 255
    attacks = {
        "pgd": pgd_attack(tiny_model, x, y, eps, 2 / 255, 5, step_mask=m, generator=g),
        "pgd_map": pgd_attack(tiny_model, x, y, eps_map, 1 / 255, 5, step_mask=m, generator=g),
        "fgsm_rs": fgsm_rs_attack(tiny_model, x, y, eps, step_mask=m, generator=g),
    }
    for name, x_adv in attacks.items():
        assert x_adv.dtype == torch.float32, name
        delta = x_adv - x
        budget = eps_map if name == "pgd_map" else eps
        assert bool((delta.abs() <= budget + 1e-7).all()), name  # fp32 rounding of x + d - x
        assert x_adv.min() >= 0 and x_adv.max() <= 1, name
        assert torch.equal(x_adv * (1 - m), x * (1 - m)), name  # salient pixels untouched
        assert delta.abs().max() > 0, name  # and it did attack
    noisy = n_fgsm_attack(tiny_model, x, y, eps, step_mask=m, generator=g)
    assert torch.equal(noisy * (1 - m), x * (1 - m))
    assert bool(((noisy - x).abs() <= 3 * eps + 1e-7).all())  # noise 2 eps + step eps


def test_fp16_input_gradients_are_scaled_so_small_ones_survive(tiny_model):
    """The attack's gradient sign in fp16 agrees with fp32's on most pixels (loss scaling:
    without it most input gradients of a confident model flush to zero in fp16)."""
    x = torch.rand(16, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 4, (16,), generator=torch.Generator().manual_seed(2))
    from worker.sipat.attacks import _input_grad

    ref = _input_grad(tiny_model, x, y).sign()
    tiny_model.set_precision("fp16")
    assert tiny_model.input_grad_scale > 1
    half = _input_grad(tiny_model, x, y).sign()
    assert (half == 0).float().mean() < 0.01
    assert (half == ref).float().mean() > 0.9


def _cfg(**kw):
    base = dict(
        method="pgd_at",
        epochs=2,
        batch_size=32,
        lr=0.05,
        steps=2,
        eval_subset=16,
        eval_steps=2,
        eval_eps=[8 / 255],
        autoattack_n=0,  # AutoAttack's cost on a CPU is per iteration: tests/sipat/test_robustness
        crop_padding=1,
        seed=3,
    )
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("precision", PRECISIONS)
def test_a_reduced_precision_pgd_at_run_trains_and_records_its_precision(
    precision, tiny_data, tmp_path
):
    r = train(_cfg(precision=precision, epochs=3), tmp_path, data=tiny_data, progress=False)
    losses = [h["train_loss"] for h in r["history"]]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]  # it learns
    assert r["runtime"]["precision"] == precision and r["runtime"]["device"] == "cpu"
    assert r["config"]["precision"] == precision
    # different numbers from fp32 (the precision is really in force), close to them
    ref = train(_cfg(epochs=3), tmp_path / "fp32", data=tiny_data, progress=False)
    assert [h["train_loss"] for h in ref["history"]] != losses
    assert abs(ref["history"][-1]["train_loss"] - losses[-1]) < 0.5
    # the final evaluation ran in fp32 whatever the training precision
    assert r["final"]["settings"] == ref["final"]["settings"]


@pytest.mark.parametrize("precision", PRECISIONS)
def test_reduced_precision_resume_equals_uninterrupted(precision, tiny_data, tmp_path):
    cfg = _cfg(precision=precision, eps_warmup_epochs=1.0)
    full = train(cfg, tmp_path / "full", data=tiny_data, progress=False)
    calls = {"n": 0}
    per_epoch = (len(tiny_data.train) + 31) // 32

    def stop_in_second_epoch():
        calls["n"] += 1
        return calls["n"] > per_epoch + 1

    with pytest.raises(TrainingCancelled):
        train(
            cfg, tmp_path / "cut", data=tiny_data, progress=False, should_stop=stop_in_second_epoch
        )
    if precision == "fp16":  # the gradient scaler's state travels in the checkpoint
        ck = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)
        assert ck["scaler"]["scale"] > 0
    resumed = train(cfg, tmp_path / "cut", data=tiny_data, progress=False)
    assert resumed["history"] == full["history"]
    assert resumed["final"] == full["final"]


def test_step_scaler_scales_fp16_only(tiny_model):
    assert StepScaler("cpu", "fp32").state_dict() is None
    assert StepScaler("cpu", "bf16").state_dict() is None
    s = StepScaler("cpu", "fp16")
    opt = torch.optim.SGD(tiny_model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in tiny_model.parameters()]
    x, y = torch.rand(4, 3, 12, 12), torch.tensor([0, 1, 2, 3])
    tiny_model.set_precision("fp16")
    s.step(torch.nn.functional.cross_entropy(tiny_model(x), y), opt)
    assert s.state_dict()["scale"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, tiny_model.parameters(), strict=True))


def test_precision_enters_the_fingerprint_and_runtime_settings_do_not():
    base = TrainConfig()
    assert base.fingerprint() != TrainConfig(precision="bf16").fingerprint()
    assert (
        TrainConfig(precision="bf16").fingerprint() != TrainConfig(precision="fp16").fingerprint()
    )
    for kw in (
        {"compile": True},
        {"data_loader": "stream"},
        {"loader_workers": 0},
        {"deterministic": True},
        {"device": "cuda:0"},
    ):
        assert TrainConfig(**kw).fingerprint() == base.fingerprint(), kw
    # fp32 keeps the fingerprint runs had before these fields existed: they still resume
    d = base.to_dict()
    later = (
        "precision",
        "eps_warmup_epochs",
        "fast_attack",
        "n_fgsm_noise_ratio",
        "n_fgsm_alpha_ratio",
        "sync_batchnorm",
    )
    for name in (*RUNTIME_ONLY, *EVAL_ONLY, *later):
        del d[name]
    old = hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]
    assert base.fingerprint() == old


def test_bad_runtime_settings_are_refused_with_the_field():
    from worker.sipat import ConfigError

    for field, value in (
        ("precision", "fp8"),
        ("data_loader", "disk"),
        ("loader_workers", -1),
        ("compile", "yes"),
    ):
        with pytest.raises(ConfigError) as e:
            TrainConfig.from_dict({field: value})
        assert e.value.field == field


def test_compile_checks_a_real_step_and_falls_back_with_a_reason(tiny_model):
    x, y = torch.rand(8, 3, 12, 12), torch.randint(0, 4, (8,))
    state = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    net, why = compile_model(tiny_model, x, y, backend="aot_eager")
    assert why is None and net is not tiny_model
    # the trial step left the model as it was (BatchNorm statistics included)
    assert all(torch.equal(state[k], v) for k, v in tiny_model.state_dict().items())
    tiny_model.eval()
    assert torch.allclose(net(x), tiny_model(x), atol=1e-5)
    net, why = compile_model(tiny_model, x, y, backend="no_such_backend")
    assert net is tiny_model and "no_such_backend" in why


def test_a_compiled_run_trains_like_the_eager_one(tiny_data, tmp_path):
    cfg = _cfg(epochs=1, autoattack_n=0)
    eager = train(cfg, tmp_path / "eager", data=tiny_data, progress=False)
    compiled = train(  # aot_eager: inductor's code generation takes minutes on this CPU
        _cfg(epochs=1, autoattack_n=0, compile=True, compile_backend="aot_eager"),
        tmp_path / "compiled",
        data=tiny_data,
        progress=False,
    )
    assert compiled["runtime"]["compiled"] is True and eager["runtime"]["compiled"] is False
    for a, b in zip(eager["history"], compiled["history"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-3)
        assert a["clean_accuracy"] == pytest.approx(b["clean_accuracy"], abs=1 / 48 + 1e-9)
    # a backend that cannot compile: the run trains eager and says why
    fell_back = train(
        _cfg(epochs=1, autoattack_n=0, compile=True, compile_backend="no_such_backend"),
        tmp_path / "fallback",
        data=tiny_data,
        progress=False,
    )
    assert fell_back["runtime"]["compiled"] is False
    assert "no_such_backend" in fell_back["runtime"]["compile_fallback"]
    assert fell_back["history"] == eager["history"]
