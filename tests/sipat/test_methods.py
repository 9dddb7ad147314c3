import dataclasses

import pytest
import torch

from worker.sipat import METHODS, TrainConfig, train
from worker.sipat.methods import igd_loss, sip_step_mask
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
