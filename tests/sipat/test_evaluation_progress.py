"""The final evaluation reports its progress stage by stage in runconfig.cost's units, and
train() weighs it against training: the work a run reports while it trains, then the
evaluation's points (issue 29: a run's progress ends when its evaluation does)."""

from __future__ import annotations

import math

from runconfig import cost
from worker.sipat import TrainConfig, robustness, train
from worker.sipat.evaluate import EvaluationProgress, _autoattack_progress


def _cfg(**kw):
    return TrainConfig(
        method="pgd_at",
        epochs=1,
        batch_size=32,
        lr=0.05,
        steps=2,
        eval_subset=16,
        eval_steps=2,
        eval_restarts=2,
        eval_eps=[4 / 255, 8 / 255],
        epoch_eval_steps=1,
        seed=3,
        **kw,
    )


def test_the_cost_model_runs_autoattack_as_the_library_does():
    assert cost.AA_ITERATIONS == robustness.AA_ITERATIONS
    assert cost.AA_SQUARE_QUERIES == robustness.AA_SQUARE_QUERIES
    assert cost.LARGE_EPS == robustness.LARGE_EPS
    assert cost.MIN_CLASSES_APGD_T == robustness.MIN_CLASSES_APGD_T
    assert tuple(cost.AA_ATTACK_LABELS) == robustness.AA_ATTACKS
    for n_classes in (2, 3, 4, 10):
        assert cost.autoattack_attacks(n_classes) == robustness.attacks_for(n_classes)


def test_training_reports_its_work_and_the_evaluation_its_stages(tiny_data, tmp_path):
    batches, evaluation = [], []
    train(
        _cfg(autoattack_n=0),  # AutoAttack's stages: below, from its logged events
        tmp_path,
        data=tiny_data,
        on_batch=batches.append,
        on_evaluation=evaluation.append,
        progress=False,
    )
    work = [b["work"] for b in batches]
    assert all(w["train_units"] == work[0]["train_units"] for w in work)
    done = [w["train_units_done"] for w in work]
    assert done == sorted(done) and done[-1] < work[0]["train_units"]  # the check comes after
    assert all(w["evaluation_units"] > 0 and w["units_per_s"] > 0 for w in work)
    # every stage in order, begun and ended, the share done only ever growing to the end
    stages = list(dict.fromkeys(p["stage"] for p in evaluation))
    assert stages == ["clean", "subset_clean", "pgd:0.0156863", "pgd:0.0313725", "large_eps"]
    share = [p["units_done"] / p["units_total"] for p in evaluation]
    assert share[0] == 0.0 and share == sorted(share) and math.isclose(share[-1], 1.0)
    last = evaluation[-1]
    assert last["stage_index"] == last["stages"] == 5
    assert last["images_done"] == last["images"] == 16
    assert last["label"] == "PGD-2 × 2 restarts at ε 127.5/255"


def _autoattack_stages(n_classes: int) -> list[cost.Stage]:
    return cost.evaluation_stages(
        n_test=10, n_subset=10, eps_grid=[8 / 255], steps=2, restarts=1, autoattack_n=10,
        autoattack_eps=8 / 255, n_classes=n_classes, survival=0.5,
    )  # fmt: skip


def test_autoattack_stages_are_sized_by_the_images_still_robust():
    """Each attack is sized when it begins by the images the one before it left; attacks
    skipped because none was left count as done with no work."""
    points = []
    progress = EvaluationProgress(_autoattack_stages(10), points.append, every_s=0)
    for key in ("clean", "pgd:0.0313725", "large_eps"):
        progress.begin(key)
        progress.end()
    on_event = _autoattack_progress(progress, 10, 10)
    on_event("initial", "", 0.8)
    on_event("start", "apgd-ce", 0.0)
    assert points[-1]["images"] == 8
    assert progress.stages[progress.current].units == 8 * cost.AA_ITERATIONS
    on_event("batch", "apgd-ce", 1.0)
    on_event("end", "apgd-ce", 0.3)
    on_event("start", "apgd-t", 0.0)
    assert points[-1]["images"] == 3 and points[-1]["label"] == "AutoAttack APGD-T at ε 8/255"
    assert progress.stages[progress.current].units == 3 * cost.AA_ITERATIONS * 9
    on_event("end", "apgd-t", 0.0)
    on_event("stop", "", 0.0)  # nothing left: FAB-T and Square are not run
    for stage in progress.stages:
        if stage.key.startswith("aa:") and stage.key not in progress.finished:
            progress.skip(stage.key)
    progress.begin("aa_pgd")
    progress.end()
    share = [p["units_done"] / p["units_total"] for p in points]
    assert math.isclose(share[-1], 1.0) and share[0] == 0.0
    assert all(0 <= s <= 1 for s in share)
