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


def _quickly_trained(data):
    """A tiny CNN fitted for a few clean steps, so it classifies some test images right."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    model = build_model("small_cnn", data.num_classes, 3, 12)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    idx = torch.arange(len(data.train))
    for _ in range(30):
        x, _, _, y = data.train.batch(idx, "cpu")
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def test_autoattack_is_at_least_as_strong_as_pgd(tiny_data):
    from worker.sipat.evaluate import autoattack_accuracy, clean_accuracy, robust_accuracy

    model = _quickly_trained(tiny_data)
    # AutoAttack's Square stage spends 5000 queries on every image it cannot break: a few
    # images at a budget that breaks most of them keep this test short on a CPU.
    test = tiny_data.test.subset(torch.arange(12))
    eps = 16 / 255
    clean = clean_accuracy(model, test)
    pgd = robust_accuracy(model, test, eps, steps=20)
    aa = autoattack_accuracy(model, test, eps, tiny_data.num_classes)
    assert clean > 1 / tiny_data.num_classes  # the model learned something to attack
    assert 0 <= aa <= pgd + 1 / len(test) and pgd <= clean
    assert model.training is False


def test_evaluate_model_attacks_a_class_spread_subset(tiny_data):
    from worker.sipat.data import DataBundle
    from worker.sipat.evaluate import clean_accuracy, evaluate_model

    model = _quickly_trained(tiny_data)
    # the test set sorted by class, as an ImageFolder tree gives it
    order = torch.argsort(tiny_data.test.labels, stable=True)
    data = DataBundle(tiny_data.train, tiny_data.test.subset(order), tiny_data.classes)
    out = evaluate_model(model, data, [4 / 255], subset=16, steps=3)
    sub = data.test.spread_subset(16)
    assert out["robust_subset"] == 16
    assert len(sub.labels.unique()) == data.num_classes  # not just the first class
    assert out["subset_clean_accuracy"] == clean_accuracy(model, sub)
    whole = evaluate_model(model, data, [4 / 255], subset=0, steps=3)
    assert whole["robust_subset"] == len(data.test)
    assert whole["subset_clean_accuracy"] == whole["clean_accuracy"]
