"""The inequality tests (IGD / Duan et al.): rates, their shape, and one image set for all."""

import torch

from worker.sipat.inequality import (
    INDUCTIVE_T,
    RANDOM_T,
    common_correct_subset,
    gini,
    inequality_tests,
    noise_error_rates,
)
from worker.sipat.models import build_model


def test_gini_sanity():
    assert abs(float(gini(torch.ones(1, 100)))) < 1e-6
    one_hot = torch.zeros(1, 1000)
    one_hot[0, 3] = 1
    assert float(gini(one_hot)) > 0.99


def _model(seed):
    torch.manual_seed(seed)
    return build_model("small_cnn", 4, 3, 12).eval()


def test_every_test_reports_rates_keyed_by_its_grid():
    model = _model(0)
    x = torch.rand(6, 3, 12, 12)
    y = model(x).argmax(1).detach()  # the model's own answers: all "correct"
    seen = []
    r = inequality_tests(model, x, y, occlusion_n=3, occlusion_r=4, progress=seen.append)
    assert r["n"] == 6 and 0 <= r["gini"] <= 1
    assert list(r["inductive_noise_added"]) == [f"{t:g}" for t in INDUCTIVE_T]
    assert list(r["inductive_noise_replaced"]) == [f"{t:g}" for t in INDUCTIVE_T]
    assert list(r["random_noise_added"]) == [f"{t:g}" for t in RANDOM_T]
    for key in ("inductive_noise_added", "inductive_noise_replaced", "random_noise_added"):
        assert all(0 <= v <= 1 for v in r[key].values())
    for colour in ("grey", "white"):
        rates = list(r["inductive_occlusion"][colour].values())
        assert list(r["inductive_occlusion"][colour]) == ["1", "2", "3", "4"]
        # a sample counts from its first misclassification on: never fewer errors at larger r
        assert all(0 <= a <= b <= 1 for a, b in zip(rates, rates[1:], strict=False))
    assert seen == sorted(seen) and seen[-1] == 1.0


def test_replaced_and_added_noise_are_different_threats():
    model = _model(1)
    x = torch.full((4, 3, 12, 12), 0.5)
    y = torch.zeros(4, dtype=torch.long)
    score = torch.rand(x.shape, generator=torch.Generator().manual_seed(0))
    added = noise_error_rates(model, x, y, score, [0.5], replace=False, seed=0)
    again = noise_error_rates(model, x, y, score, [0.5], replace=False, seed=0)
    assert added == again  # the draws depend on the seed only: the same for every model


def test_noise_lands_only_on_the_chosen_sub_pixels():
    from worker.sipat.inequality import _noise_on

    x = torch.full((2, 3, 4, 4), 0.5)
    positions = torch.tensor([[0, 5], [7, 47]])
    out = _noise_on(x, positions, torch.Generator().manual_seed(0), replace=False)
    changed = (out != x).flatten(1)
    for row, pos in zip(changed, positions, strict=True):
        assert set(row.nonzero().flatten().tolist()) <= set(pos.tolist())
    assert out.min() >= 0 and out.max() <= 1


def test_the_common_set_is_correct_for_every_model_and_spread_over_classes(tiny_data):
    import torch.nn.functional as F

    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        m = build_model("small_cnn", tiny_data.num_classes, 3, 12)
        opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
        x, _, _, y = tiny_data.train.batch(torch.arange(len(tiny_data.train)))
        for _ in range(25):
            opt.zero_grad()
            F.cross_entropy(m(x), y).backward()
            opt.step()
        models.append(m.eval())
    idx = common_correct_subset(models, tiny_data.test, 12)
    assert 0 < len(idx) <= 12
    x, _, _, y = tiny_data.test.batch(idx)
    for m in models:
        assert bool((m(x).argmax(1) == y).all())
    everything = common_correct_subset(models, tiny_data.test, 10_000)
    assert set(idx.tolist()) <= set(everything.tolist())
    if len(everything) > 12:  # spread over the classes, not the first 12 correct images
        assert len(y.unique()) > 1
