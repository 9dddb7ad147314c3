"""The inequality evaluation through a REAL Celery worker on the test Redis and PostgreSQL:
two tiny runs of one dataset are scored on one common set of test images that both classify
correctly; a single run on its own set; the result's invariants hold (rates in [0, 1],
occlusion error never falls as the squares grow, Gini in [0, 1], progress reaches 1).
The refusals (a missing model, test sets that differ) are checked on the plain function.
"""

from __future__ import annotations

import time

import pytest
import torch

from tests.worker.test_training_tasks import (  # noqa: F401 - worker is a fixture
    dataset_id,
    launch,
    send,
    wait_for,
    worker,
)

FAST = {"autoattack_n": 0}  # the tiny runs need no AutoAttack here


def read_evaluation(evaluation_id: int):
    from backend.db import get_sessionmaker
    from backend.models import InequalityEvaluation

    with get_sessionmaker()() as s:
        evaluation = s.get(InequalityEvaluation, evaluation_id)
        s.expunge(evaluation)
        return evaluation


def wait_for_evaluation(evaluation_id: int, worker, timeout: float = 240):  # noqa: F811
    seen: list[float] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        evaluation = read_evaluation(evaluation_id)
        seen.append(evaluation.progress)
        if evaluation.state == "succeeded":
            return evaluation, seen
        if evaluation.state == "failed":
            pytest.fail(f"evaluation failed: {evaluation.error}")
        time.sleep(0.1)
    pytest.fail(f"timed out in state {read_evaluation(evaluation_id).state}\n{worker.log()}")


def start(db, run_ids: list[int], n: int) -> int:
    from backend.services.inequality import start_evaluation

    return start_evaluation(db, None, run_ids, n, enqueue_fn=send).id


def assert_scores_are_rates(scores: dict, n: int) -> None:
    assert scores["n"] == n
    assert 0 <= scores["gini"] <= 1
    for test in ("inductive_noise_added", "inductive_noise_replaced", "random_noise_added"):
        assert len(scores[test]) == 10, test
        assert all(0 <= v <= 1 for v in scores[test].values()), (test, scores[test])
    for colour in ("grey", "white"):
        by_r = scores["inductive_occlusion"][colour]
        rates = [by_r[str(r)] for r in range(1, 21)]
        assert all(0 <= v <= 1 for v in rates)
        # a sample stays an error once a square fooled it: the rate never falls with r
        assert all(a <= b for a, b in zip(rates, rates[1:], strict=False)), (colour, rates)


def correct_for(run_id: int, test_indices: list[int]) -> bool:
    """Whether the run's final model classifies every one of these test images correctly."""
    from backend.core.storage import get_storage
    from backend.services.runs import run_data_key, run_out_key
    from worker.sipat import load_data, load_model_from_checkpoint

    storage = get_storage()
    model = load_model_from_checkpoint(storage.path(run_out_key(run_id)) / "final.pt")
    test = load_data(storage.path(run_data_key(run_id)), None, 0.2, 0).test
    x, _, _, y = test.batch(torch.tensor(test_indices))
    with torch.no_grad():
        return bool((model(x).argmax(1) == y).all())


def test_two_runs_share_one_image_set_and_one_run_gets_its_own(worker, db, dataset_id):  # noqa: F811
    from backend.models import Image

    a = launch(db, dataset_id, method="standard", seed=11, **FAST)
    b = launch(db, dataset_id, method="pgd_at", seed=12, **FAST)
    for run_id in (a, b):
        wait_for(run_id, lambda r: r.state == "succeeded", worker)

    requested = 12
    t0 = time.monotonic()
    evaluation, progress = wait_for_evaluation(start(db, [a, b], requested), worker)
    print(f"\ninequality evaluation of two tiny runs: {time.monotonic() - t0:.1f} s")
    assert evaluation.common_set is True and evaluation.n_requested == requested
    assert progress[-1] == 1.0 and evaluation.finished_at is not None
    assert all(p <= q for p, q in zip(progress, progress[1:], strict=False)), progress
    result = evaluation.result
    images = result["images"]
    n = images["n"]
    assert 1 <= n <= requested and images["requested"] == requested
    assert images["test_split"] == "export"
    assert len(images["image_ids"]) == len(set(images["image_ids"])) == n
    assert sum(images["per_class"].values()) == n
    # the images are test images of the dataset, and both models get every one of them right
    rows = [db.get(Image, i) for i in images["image_ids"]]
    assert all(r is not None and r.split == "test" and r.dataset_id == dataset_id for r in rows)
    assert correct_for(a, images["test_indices"]) and correct_for(b, images["test_indices"])
    assert set(result["runs"]) == {str(a), str(b)}
    for scores in result["runs"].values():
        assert_scores_are_rates(scores, n)

    single, _ = wait_for_evaluation(start(db, [b], requested), worker)
    assert single.common_set is False
    assert set(single.result["runs"]) == {str(b)}
    own = single.result["images"]
    # b's own correct set holds the common one (the same spread, fewer constraints)
    assert own["n"] >= n
    assert_scores_are_rates(single.result["runs"][str(b)], own["n"])


def test_a_run_without_its_model_fails_the_evaluation_with_the_reason(db, dataset_id):  # noqa: F811
    """The plain function, no worker: a finished run whose final.pt is gone."""
    from backend.core.storage import get_storage
    from backend.models import InequalityEvaluation, TrainingRun
    from backend.services.runs import run_data_key
    from worker.evaluation_tasks import run_evaluation
    from worker.training_tasks import ensure_export

    run = TrainingRun(
        dataset_id=dataset_id,
        method="standard",
        config={"method": "standard", "model": "small_cnn", "seed": 0},
        state="succeeded",
        checkpoint_key="runs/x/out",
    )
    db.add(run)
    db.commit()
    ensure_export(db, get_storage(), run)
    assert get_storage().exists(f"{run_data_key(run.id)}/manifest.json")
    evaluation = InequalityEvaluation(
        run_ids=[run.id],
        run_key=str(run.id),
        dataset_id=dataset_id,
        n_requested=5,
        common_set=False,
    )
    db.add(evaluation)
    db.commit()
    assert run_evaluation(db, get_storage(), evaluation.id, "cpu") == "failed"
    db.refresh(evaluation)
    assert evaluation.state == "failed" and evaluation.finished_at is not None
    assert f"run {run.id} has no final model" in evaluation.error
    # a second delivery leaves the finished evaluation alone
    assert run_evaluation(db, get_storage(), evaluation.id, "cpu").startswith("skipped")


def test_runs_tested_on_different_images_are_refused():
    from types import SimpleNamespace

    from worker.evaluation_tasks import RunSource, check_same_test_set

    def source(run_id: int, splits: list[str], seed: int) -> RunSource:
        images = [{"id": i, "split": s} for i, s in enumerate(splits)]
        cfg = SimpleNamespace(image_size=None, test_fraction=0.2, seed=seed)
        return RunSource(SimpleNamespace(id=run_id), cfg, None, {"images": images})  # type: ignore[arg-type]

    split = ["train", "test", "train", "test"]
    check_same_test_set([source(1, split, 0), source(2, split, 5)])  # the export's split
    unsplit = ["train"] * 4
    check_same_test_set([source(1, unsplit, 3), source(2, unsplit, 3)])  # one seeded draw
    with pytest.raises(ValueError, match="runs 1 and 2 were tested on different images"):
        check_same_test_set([source(1, unsplit, 3), source(2, unsplit, 4)])
    with pytest.raises(ValueError, match="runs 1 and 3 were tested on different images"):
        check_same_test_set([source(1, split, 0), source(3, split[:2] + ["train", "train"], 0)])
