import torch

from worker.sipat.models import build_model
from worker.sipat.salience import (
    agreement_with_mask,
    binarise,
    grad_cam,
    input_gradient_salience,
    normalize_per_image,
    part_budget_map,
)


def test_grad_cam_batched_shape_range_and_no_param_grad():
    torch.manual_seed(0)
    model = build_model("small_cnn", 3, 3, 12).train()
    x = torch.rand(5, 3, 12, 12)
    cam = grad_cam(model, x)
    assert cam.shape == (5, 1, 12, 12) and (cam >= 0).all()
    assert model.training and all(p.grad is None for p in model.parameters())
    # batched equals one image at a time
    single = torch.cat([grad_cam(model, x[i : i + 1]) for i in range(5)])
    assert torch.allclose(cam, single, atol=1e-5)
    s = input_gradient_salience(model, x)
    assert s.shape == (5, 1, 12, 12) and s.min() >= 0 and s.max() <= 1


def test_part_map_per_pixel_same_channels_monotonic():
    g = torch.Generator().manual_seed(0)
    cam = torch.rand(4, 1, 10, 10, generator=g) ** 3
    eps, low = 8 / 255, 7 / 255
    m = part_budget_map(cam, eps, low, channels=3)
    assert m.shape == (4, 3, 10, 10)
    assert torch.equal(m[:, 0], m[:, 1]) and torch.equal(m[:, 1], m[:, 2])
    allowed = torch.tensor([low, eps])
    assert torch.isin(m, allowed).all()
    for i in range(4):  # monotonic: a higher CAM value never gets a lower budget
        c, b = cam[i, 0].flatten(), m[i, 0].flatten()
        order = c.argsort()
        assert (b[order].diff() >= 0).all()
    assert (m == eps).any() and (m == low).any()


def test_binarise_and_normalise():
    s = torch.tensor([[[[0.2, 0.5, 0.9]]]])
    assert binarise(s).tolist() == [[[[0.0, 1.0, 1.0]]]]
    n = normalize_per_image(torch.tensor([[[[2.0, 4.0, 6.0]]]]))
    assert n.tolist() == [[[[0.0, 0.5, 1.0]]]]


def test_agreement_perfect_and_disjoint():
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :2] = 1
    perfect = agreement_with_mask(mask * 0.9 + 0.05, mask)
    assert perfect["top_mass_in_mask"].item() == 1.0 and perfect["iou_top_k"].item() == 1.0
    disjoint = agreement_with_mask(1 - mask, mask)
    assert disjoint["iou_top_k"].item() == 0.0 and disjoint["top_mass_in_mask"].item() == 0.0


def test_salience_samples_are_spread_over_the_classes():
    from worker.sipat.salience_samples import spread_over_classes

    labels = [0] * 50 + [1] * 30 + [2] * 20  # a class-sorted test set
    picked = spread_over_classes(range(100), labels, 6)
    assert [labels[i] for i in picked] == [0, 1, 2, 0, 1, 2]
    assert len(set(picked)) == 6
    # fewer classes than samples, or fewer candidates than n: all of them, no repeats
    assert sorted(spread_over_classes([3, 60, 61], labels, 6)) == [3, 60, 61]
    assert spread_over_classes([], labels, 6) == []
