import torch

from worker.sipat.models import build_model


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


def test_evaluate_model_attacks_a_class_spread_subset(tiny_data):
    from worker.sipat.data import DataBundle
    from worker.sipat.evaluate import clean_accuracy, evaluate_model

    model = _quickly_trained(tiny_data)
    # the test set sorted by class, as an ImageFolder tree gives it
    order = torch.argsort(tiny_data.test.labels, stable=True)
    data = DataBundle(tiny_data.train, tiny_data.test.subset(order), tiny_data.classes)
    out = evaluate_model(model, data, [4 / 255], subset=16, steps=3, restarts=2)
    sub = data.test.spread_subset(16)
    assert out["robust_subset"] == 16
    assert len(sub.labels.unique()) == data.num_classes  # not just the first class
    assert out["subset_clean_accuracy"] == clean_accuracy(model, sub)
    assert out["pgd"] == {
        "attack": "PGD",
        "steps": 3,
        "restarts": 2,
        "alpha": "eps/4",
        "random_start": True,
        "n": 16,
    }
    assert "autoattack" not in out  # no AutoAttack budget given
    whole = evaluate_model(model, data, [4 / 255], subset=0, steps=3)
    assert whole["robust_subset"] == len(data.test)
    assert whole["subset_clean_accuracy"] == whole["clean_accuracy"]
