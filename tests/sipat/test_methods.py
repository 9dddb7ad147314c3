import dataclasses
import hashlib
import json

import pytest
import torch

from worker.sipat import METHODS, TrainConfig, train
from worker.sipat.config import EVAL_ONLY, RUNTIME_ONLY
from worker.sipat.methods import build_method, igd_loss, sip_step_mask
from worker.sipat.models import build_model


def test_sip_step_mask():
    s = torch.tensor([0.2, 0.5, 0.9, 1.0]).view(1, 1, 2, 2).repeat(2, 1, 1, 1)
    m = sip_step_mask(s, torch.tensor([True, False]), 0.5)
    assert m[0].flatten().tolist() == [1.0, 0.0, 0.0, 0.0]
    assert m[1].flatten().tolist() == [1.0, 1.0, 1.0, 1.0]  # no map: plain PGD


def test_igd_cosine_term_backpropagates_through_input_gradient():
    torch.manual_seed(0)
    student, teacher = build_model("small_cnn", 3, 3, 8), build_model("small_cnn", 3, 3, 8)
    x, y = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 0])
    loss = igd_loss(student, teacher, x, y)
    loss.backward()  # the cosine term alone
    # every conv and the head's weights shape the input gradient, so they must receive grad
    weights = [p for n, p in student.named_parameters() if n.endswith("weight") and p.dim() > 1]
    assert weights and all(p.grad is not None and p.grad.abs().sum() > 0 for p in weights)
    assert all(p.grad is None for p in teacher.parameters())
    # the channels-last teacher IGD uses on CPU gives the same loss and student gradients
    grads = [p.grad.clone() for p in student.parameters() if p.grad is not None]
    student.zero_grad()
    loss_cl = igd_loss(student, teacher.to(memory_format=torch.channels_last), x, y)
    loss_cl.backward()
    assert torch.allclose(loss_cl, loss, atol=1e-6)
    again = [p.grad for p in student.parameters() if p.grad is not None]
    for a, b in zip(grads, again, strict=True):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)


def _cfg(method, **kw):
    base = dict(
        method=method,
        epochs=1,
        batch_size=32,
        lr=0.05,
        eps=8 / 255,
        alpha=2 / 255,
        steps=2,
        eval_subset=16,
        eval_steps=2,
        eval_eps=[8 / 255],
        autoattack_n=0,  # these tests are about training; AutoAttack has its own tests
        crop_padding=1,
        part_warmup_epochs=0,
    )
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory, tiny_data):
    out = tmp_path_factory.mktemp("teacher")
    train(_cfg("standard"), out, data=tiny_data, progress=False)
    return str(out / "final.pt")


@pytest.mark.parametrize("method", METHODS)
def test_each_method_trains_one_epoch(method, tiny_data, teacher_ckpt, tmp_path):
    cfg = _cfg(method, igd_teacher=teacher_ckpt)
    cfg.validate()
    seen = []
    r = train(
        cfg, tmp_path, data=tiny_data, progress=False, on_epoch=lambda e, n, m: seen.append((e, n))
    )
    assert seen == [(1, 1)]
    assert (tmp_path / "final.pt").exists() and (tmp_path / "metrics.json").exists()
    assert 0 <= r["final"]["clean_accuracy"] <= 1
    assert r["history"][0]["train_loss"] > 0


@pytest.mark.parametrize("source", ["gradcam", "input_gradient"])
def test_sip_at_automatic_masks(source, tiny_data, teacher_ckpt, tmp_path):
    cfg = _cfg("sip_at", mask_source=source, auto_mask_model=teacher_ckpt, mask_fraction=0.5)
    r = train(cfg, tmp_path, data=tiny_data, progress=False)
    assert r["method"]["mask_source"] == source
    assert r["train_images_with_map"] == len(tiny_data.train) // 2


def test_config_dataclass_roundtrip():
    cfg = _cfg("pgd_at")
    assert TrainConfig.from_dict(dataclasses.asdict(cfg)) == cfg


def test_eps_warmup_epochs_validated():
    from worker.sipat import ConfigError

    ok = TrainConfig.from_dict({"epochs": 4, "eps_warmup_epochs": 2.5})
    assert ok.eps_warmup_epochs == 2.5
    for bad in (-1, 5, "2"):
        with pytest.raises(ConfigError) as e:
            TrainConfig.from_dict({"epochs": 4, "eps_warmup_epochs": bad})
        assert e.value.field == "eps_warmup_epochs"
    # off, it leaves the fingerprint as before the field existed (older runs still resume)
    d = {k: v for k, v in TrainConfig().to_dict().items() if k not in RUNTIME_ONLY}
    later = (
        "eps_warmup_epochs",
        "fast_attack",
        "n_fgsm_noise_ratio",
        "n_fgsm_alpha_ratio",
        "precision",
        "sync_batchnorm",
    )
    for name in (*later, *EVAL_ONLY):  # added later and off or unused; or evaluation only
        del d[name]
    old = hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]
    assert TrainConfig().fingerprint() == old != ok.fingerprint()


def test_evaluation_settings_do_not_enter_the_fingerprint():
    base = TrainConfig()
    evaluated_otherwise = TrainConfig(
        eval_eps=[1 / 255], eval_steps=50, eval_restarts=5, autoattack_n=1000
    )
    assert base.fingerprint() == evaluated_otherwise.fingerprint()
    # the per-epoch check is part of the run's record: it does
    assert base.fingerprint() != TrainConfig(epoch_eval_steps=3).fingerprint()
    assert base.fingerprint() != TrainConfig(eval_subset=7).fingerprint()


def test_fast_attack_validated_and_recorded(tiny_data, tmp_path):
    from worker.sipat import ConfigError

    with pytest.raises(ConfigError) as e:
        TrainConfig.from_dict({"method": "fast_sip_at", "fast_attack": "pgd"})
    assert e.value.field == "fast_attack"
    with pytest.raises(ConfigError) as e:
        TrainConfig.from_dict({"method": "fast_sip_at", "n_fgsm_alpha_ratio": 0})
    assert e.value.field == "n_fgsm_alpha_ratio"
    # the fast-only fields do not enter other methods' fingerprints (their runs still resume)
    base = TrainConfig(method="pgd_at")
    assert base.fingerprint() == TrainConfig(method="pgd_at", fast_attack="fgsm_rs").fingerprint()
    fast = TrainConfig(method="fast_sip_at")
    rs = TrainConfig(method="fast_sip_at", fast_attack="fgsm_rs")
    assert fast.fingerprint() != rs.fingerprint()
    r = train(_cfg("fast_sip_at", fast_attack="fgsm_rs"), tmp_path, data=tiny_data, progress=False)
    assert r["method"]["fast_attack"] == "fgsm_rs" and r["method"]["fast_alpha_ratio"] == 1.25


def test_budget_scale_is_a_linear_ramp_per_batch():
    from worker.sipat.methods import budget_scale

    off = _cfg("pgd_at", epochs=3)
    assert budget_scale(off, 0, 0, 4) == 1.0
    cfg = _cfg("pgd_at", epochs=3, eps_warmup_epochs=2)
    got = [budget_scale(cfg, e, b, 4) for e in range(3) for b in range(4)]
    assert got[:8] == pytest.approx([k / 8 for k in range(1, 9)])  # 8 warm-up batches
    assert got[8:] == [1.0] * 4


@pytest.mark.parametrize(
    "method, extra, reach",
    [
        ("pgd_at", {}, 1),
        ("sip_at", {}, 1),
        ("part", {}, 1),
        ("igd", {}, 1),
        ("fast_sip_at", {"fast_attack": "fgsm_rs"}, 1),
        # N-FGSM's examples reach (noise 2 + step 1) x eps by design
        ("fast_sip_at", {"fast_attack": "n_fgsm"}, 3),
    ],
)
def test_every_adversary_uses_the_scaled_budget(method, extra, reach, tiny_data, teacher_ckpt):
    cfg = _cfg(method, igd_teacher=teacher_ckpt, eps=16 / 255, alpha=8 / 255, steps=3, **extra)
    m = build_method(cfg)
    model = build_model("small_cnn", 4, 3, 12)
    x, s, has_map, y = tiny_data.train.batch(torch.arange(16), "cpu")
    gen = torch.Generator().manual_seed(0)
    full = (m.adversarial(model, x, s, has_map, y, 0, gen) - x).abs().max()
    m.scale = 0.25
    quarter = (m.adversarial(model, x, s, has_map, y, 0, gen) - x).abs().max()
    assert full > 12 / 255  # the full budget is used ...
    assert quarter <= reach * 4 / 255 + 1e-6  # ... and a quarter of it during the warm-up
    assert m.eps == pytest.approx(4 / 255) and m.alpha == pytest.approx(2 / 255)


def test_warmup_recorded_per_epoch(tiny_data, tmp_path):
    cfg = _cfg("pgd_at", epochs=2, eps_warmup_epochs=1.5)
    h = train(cfg, tmp_path, data=tiny_data, progress=False)["history"]
    batches = (len(tiny_data.train) + 31) // 32
    assert h[0]["train_eps"] == pytest.approx(cfg.eps * batches / (1.5 * batches))
    assert h[1]["train_eps"] == pytest.approx(cfg.eps)
