import torch

from worker.sipat.evaluate import gini, inequality_tests
from worker.sipat.models import build_model


def test_gini_sanity():
    assert abs(float(gini(torch.ones(1, 100)))) < 1e-6
    one_hot = torch.zeros(1, 1000)
    one_hot[0, 3] = 1
    assert float(gini(one_hot)) > 0.99


def test_inequality_tests_run_and_are_rates():
    torch.manual_seed(0)
    model = build_model("small_cnn", 3, 3, 12)
    x = torch.rand(6, 3, 12, 12)
    y = torch.zeros(6, dtype=torch.long)
    r = inequality_tests(model, x, y, occlusion_n=2, occlusion_r=2)
    assert 0 <= r["gini"] <= 1
    for key in ("inductive_noise", "random_noise", "inductive_occlusion"):
        assert all(0 <= v <= 1 for v in r[key].values())
