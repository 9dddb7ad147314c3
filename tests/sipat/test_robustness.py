"""Cross-checks of the robust numbers against the attacks' reference implementations, and
the gradient-masking checks on a model built to mask gradients (issue 9, item 5)."""

import pytest
import torch
from torch import nn

from worker.sipat.bench_eval import quick_pgd_at_model
from worker.sipat.benchmark_data import salience_benchmark
from worker.sipat.evaluate import evaluate_model, robust_accuracy
from worker.sipat.robustness import (
    autoattack,
    build_autoattack,
    gradient_masking_checks,
    pgd_robust,
)

EPS = 8 / 255


@pytest.fixture(scope="module")
def bench_data():
    # 4 classes, 16 x 16: the salience benchmark at a size a PGD-AT model learns in seconds
    return salience_benchmark(n_train=400, n_test=200, image_size=16, region=8, seed=3)


@pytest.fixture(scope="module")
def pgd_at_model(bench_data, tmp_path_factory):
    """A small checkpoint trained with PGD-AT in the test (no AutoAttack in its own run)."""
    return quick_pgd_at_model(bench_data, tmp_path_factory.mktemp("pgd_at"))


AA_IMAGES = 32


@pytest.fixture(scope="module")
def evaluated(pgd_at_model, bench_data):
    """The product's evaluation of that model: PGD-20 on 200 images, AutoAttack on 32 (one
    AutoAttack run that two tests read: each costs about a CPU-minute here)."""
    return _evaluate(pgd_at_model, bench_data, subset=200, autoattack_n=AA_IMAGES)


def _evaluate(model, bench_data, *, subset: int, autoattack_n: int) -> dict:
    """The product's final evaluation at eps 4/255 and EPS: PGD-20, AutoAttack at EPS."""
    return evaluate_model(
        model,
        bench_data,
        [4 / 255, EPS],
        subset=subset,
        steps=20,
        autoattack_eps=EPS,
        autoattack_n=autoattack_n,
    )


def _xy(ts):
    x, _, _, y = ts.batch(torch.arange(len(ts)))
    return x, y


def test_product_autoattack_equals_the_package_called_directly(evaluated, pgd_at_model, bench_data):
    # the evaluation's AutoAttack ran the product's `autoattack` on these images, seed 0
    images = bench_data.test.spread_subset(AA_IMAGES)
    ours = evaluated["autoattack"]
    assert ours["n"] == len(images) == AA_IMAGES
    # the package alone, as its README shows it, on the same images and seed
    model = pgd_at_model.eval()
    direct = build_autoattack(model, EPS, bench_data.num_classes, seed=0, device="cpu")
    x, y = _xy(images)
    x_adv, _ = direct.run_standard_evaluation(x, y, batch_size=250)
    with torch.no_grad():
        theirs = float((model(x_adv).argmax(1) == y).float().mean())
    assert 0.1 < ours["accuracy"] < ours["clean"]  # something to attack, and it attacked
    assert abs(ours["accuracy"] - theirs) <= 0.005
    # the breakdown is AutoAttack's own, cumulative, in its order, ending at its result
    after = list(ours["after"].values())
    assert list(ours["after"]) == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert ours["clean"] >= after[0] and all(a >= b for a, b in zip(after, after[1:], strict=False))
    assert after[-1] == ours["accuracy"]
    # the standard version as published: 100 iterations, C - 1 = 3 targets, 5000 queries
    assert direct.apgd.n_iter == direct.apgd_targeted.n_iter == direct.fab.n_iter == 100
    assert direct.apgd_targeted.n_target_classes == direct.fab.n_target_classes == 3
    assert direct.square.n_queries == 5000 and direct.apgd.n_restarts == 1
    assert direct.attacks_to_run == ["apgd-ce", "apgd-t", "fab-t", "square"]


def test_autoattack_leaves_the_callers_rng_and_model_mode_alone(pgd_at_model, bench_data):
    images = bench_data.test.subset(torch.arange(8))
    pgd_at_model.train()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    autoattack(pgd_at_model, images, 32 / 255, bench_data.num_classes, seed=7)
    assert torch.equal(torch.rand(3), expected)
    assert pgd_at_model.training
    pgd_at_model.eval()


def test_pgd_equals_torchattacks_and_foolbox(pgd_at_model, bench_data):
    import foolbox as fb
    import torchattacks

    model = pgd_at_model.eval()
    x, y = _xy(bench_data.test)
    n = len(y)

    def acc(x_adv):
        with torch.no_grad():
            return float((model(x_adv).argmax(1) == y).sum()) / n

    # from the clean image (no random start) the three implementations take the same steps
    ours0 = (
        1
        - float((~pgd_robust(model, bench_data.test, EPS, steps=20, restarts=1, seed=0)).sum()) / n
    )
    ta0 = acc(torchattacks.PGD(model, eps=EPS, alpha=EPS / 4, steps=20, random_start=False)(x, y))
    fmodel = fb.PyTorchModel(model, bounds=(0, 1))
    fb0 = fb.attacks.LinfPGD(abs_stepsize=EPS / 4, steps=20, random_start=False)
    _, fb_adv0, _ = fb0(fmodel, x, y, epsilons=EPS)
    assert abs(ta0 - acc(fb_adv0)) <= 0.005
    from worker.sipat.attacks import pgd_attack

    ours_fixed = acc(pgd_attack(model, x, y, EPS, EPS / 4, 20, random_start=False))
    assert abs(ours_fixed - ta0) <= 0.005 and abs(ours_fixed - acc(fb_adv0)) <= 0.005
    # with random starts (the product's evaluation): each draws its own, on 200 images
    ours = robust_accuracy(model, bench_data.test, EPS, steps=20, seed=0)
    torch.manual_seed(0)
    ta = acc(torchattacks.PGD(model, eps=EPS, alpha=EPS / 4, steps=20, random_start=True)(x, y))
    torch.manual_seed(0)
    _, fb_adv, _ = fb.attacks.LinfPGD(abs_stepsize=EPS / 4, steps=20)(fmodel, x, y, epsilons=EPS)
    assert abs(ours - ta) <= 0.005 and abs(ours - acc(fb_adv)) <= 0.005
    assert 0.1 < ours < ours0 + 0.05  # a robust model, and a random start changes little


def test_restarts_are_a_worst_case_per_image(pgd_at_model, bench_data):
    one = pgd_robust(pgd_at_model, bench_data.test, EPS, steps=5, restarts=1, seed=1)
    three = pgd_robust(pgd_at_model, bench_data.test, EPS, steps=5, restarts=3, seed=1)
    assert not (three & ~one).any()  # robust under 3 restarts => robust under the first
    assert int(three.sum()) <= int(one.sum())


def test_autoattack_is_not_above_pgd20_and_the_checks_stay_silent(evaluated):
    out = evaluated
    aa = out["autoattack"]
    assert aa["accuracy"] <= aa["pgd"]["accuracy"]
    assert aa["pgd"]["steps"] == 20 and aa["pgd"]["n"] == aa["n"] == AA_IMAGES
    assert out["large_eps"]["accuracy"] <= 0.05
    names = [c["name"] for c in out["gradient_masking"]["checks"]]
    assert names == [
        "accuracy_falls_with_eps",
        "large_budget_breaks_model",
        "autoattack_not_above_pgd",
        "black_box_not_stronger",
    ]
    assert out["gradient_masking"]["passed"], out["gradient_masking"]


class QuantisedInput(nn.Module):
    """Rounds the input to 4 grey levels before the classifier: a non-differentiable step
    whose gradient is zero almost everywhere (Athalye et al.'s shattered gradients)."""

    def __init__(self, model: nn.Module, levels: int = 4):
        super().__init__()
        self.model, self.levels = model, levels
        self.cam_layer = model.cam_layer  # for the salience agreement every evaluation reports

    def forward(self, x):
        return self.model(torch.round(x * (self.levels - 1)) / (self.levels - 1))


def test_the_checks_fire_on_a_model_that_masks_its_gradients(pgd_at_model, bench_data):
    masked = QuantisedInput(pgd_at_model).eval()
    out = _evaluate(masked, bench_data, subset=60, autoattack_n=40)
    checks = {c["name"]: c for c in out["gradient_masking"]["checks"]}
    assert not out["gradient_masking"]["passed"]
    # PGD only gets its random start: at eps 0.5 the model still answers right far too often
    assert not checks["large_budget_breaks_model"]["passed"]
    assert "at eps 127.5/255 is" in checks["large_budget_breaks_model"]["detail"]
    # the query-only Square attack finds what the gradient attacks could not
    assert not checks["black_box_not_stronger"]["passed"]
    assert out["autoattack"]["after"]["square"] < out["autoattack"]["after"]["fab-t"]


def test_each_check_names_what_failed():
    # accuracy that rises with the budget
    rise = gradient_masking_checks({0.0: 0.9, 0.02: 0.3, 0.05: 0.6}, 100)
    assert rise[0]["name"] == "accuracy_falls_with_eps" and not rise[0]["passed"]
    assert "rises from 30.0%" in rise[0]["detail"]
    # one image of noise is tolerated (tolerance: the larger of one image and 1 point)
    assert gradient_masking_checks({0.0: 0.9, 0.02: 0.30, 0.05: 0.31}, 100)[0]["passed"]
    # AutoAttack above PGD on the same images: the stronger attack did worse
    aa = {"n": 100, "accuracy": 0.4, "after": {"fab-t": 0.4, "square": 0.4}}
    checks = {
        c["name"]: c
        for c in gradient_masking_checks(
            {0.0: 0.9}, 100, autoattack_report=aa, pgd_on_autoattack_images=0.3
        )
    }
    assert not checks["autoattack_not_above_pgd"]["passed"]
    assert checks["black_box_not_stronger"]["passed"]
    silent = gradient_masking_checks(
        {0.0: 0.9, 0.03: 0.5},
        100,
        large_eps=(0.5, 0.0),
        autoattack_report={"n": 100, "accuracy": 0.45, "after": {"fab-t": 0.45, "square": 0.45}},
        pgd_on_autoattack_images=0.5,
    )
    assert all(c["passed"] for c in silent) and len(silent) == 4


def test_autoattack_runs_on_two_classes_and_channels_last_images():
    from worker.sipat.data import TensorSet
    from worker.sipat.models import build_model

    torch.manual_seed(0)
    model = build_model("small_cnn", 2, 3, 8).eval()
    images = torch.randint(0, 256, (6, 8, 8, 3), dtype=torch.uint8).permute(0, 3, 1, 2)
    assert not images.is_contiguous()  # as the export loader stores them
    ts = TensorSet(
        images=images,
        maps=torch.zeros(6, 1, 8, 8, dtype=torch.uint8),
        has_map=torch.zeros(6, dtype=torch.bool),
        labels=torch.tensor([0, 1, 0, 1, 0, 1]),
    )
    report = autoattack(model, ts, 8 / 255, 2)
    assert report["target_classes"] == 1
    assert report["attacks"] == list(report["after"]) == ["apgd-ce", "fab-t", "square"]
    assert "at least 4 classes" in report["notes"][0]
    assert 0 <= report["accuracy"] <= report["clean"] <= 1
