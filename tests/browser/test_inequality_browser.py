"""The compare page's inequality panel in real Chromium: it shows the latest evaluation of the
compared runs on load (five charts, one line per run, Gini per run, the common image count);
for one run it starts an evaluation, follows its progress bar as the row moves, and labels the
finished result as not comparable across runs. The worker's part is played by writing the
evaluation row (the real task is tested in tests/worker/test_inequality_task.py)."""

from __future__ import annotations

import pytest

from tests.browser.conftest import sign_in

pytestmark = pytest.mark.browser

INDUCTIVE_T = [f"{0.002 * i:g}" for i in range(1, 11)]
RANDOM_T = [f"{0.02 * i:g}" for i in range(1, 11)]


def scores(n: int, level: float, gini: float) -> dict:
    def rates(keys: list[str]) -> dict:
        return {k: min(1.0, level * (i + 1) / len(keys)) for i, k in enumerate(keys)}

    radii = [str(r) for r in range(1, 21)]
    return {
        "n": n,
        "gini": gini,
        "inductive_noise_added": rates(INDUCTIVE_T),
        "inductive_noise_replaced": rates(INDUCTIVE_T),
        "random_noise_added": rates(RANDOM_T),
        "inductive_occlusion": {"grey": rates(radii), "white": rates(radii)},
    }


def result(run_levels: dict[int, float], n: int = 7) -> dict:
    return {
        "seed": 0,
        "images": {
            "n": n,
            "requested": 200,
            "image_ids": list(range(1, n + 1)),
            "test_indices": list(range(n)),
            "per_class": {"cat": 3, "dog": n - 3},
            "test_split": "export",
        },
        "runs": {str(r): scores(n, level, 0.4 + level / 10) for r, level in run_levels.items()},
    }


def make_run(
    db, dataset_id: int, name: str, state: str = "succeeded", final: dict | None = None
) -> int:
    """A run row with the library's default settings: finished with `final` as its figures
    (clean accuracy 0.9 unless given), or in another state without any."""
    from backend.models import TrainingRun
    from runconfig import library_defaults

    config = {**library_defaults(), "seed": 0, "mask_set_id": None}
    done = state == "succeeded"
    run = TrainingRun(
        name=name,
        dataset_id=dataset_id,
        method=config["method"],
        config=config,
        state=state,
        progress=1.0 if done else 0.3,
        checkpoint_key="runs/0/out" if done else None,
        final_metrics={"final": final or {"clean_accuracy": 0.9}} if done else None,
    )
    db.add(run)
    db.commit()
    return run.id


def test_panel_shows_the_latest_evaluation_then_runs_one_for_a_single_run(
    page, live_server, seeded, db
):
    from backend.models import InequalityEvaluation, utcnow
    from backend.services.inequality import run_key

    a = make_run(db, seeded["dataset_id"], "first")
    b = make_run(db, seeded["dataset_id"], "second")
    db.add(
        InequalityEvaluation(
            run_ids=[a, b], run_key=run_key([a, b]), dataset_id=seeded["dataset_id"],
            n_requested=200, common_set=True, state="succeeded", progress=1.0,
            result=result({a: 0.3, b: 0.8}), finished_at=utcnow(),
        )
    )  # fmt: skip
    db.commit()
    sign_in(page, "researcher")

    page.goto(f"/#/compare?ids={a},{b}")
    panel = page.wait_for_selector(".inequality-panel .ineq-caption")
    assert "7 test images every selected run classifies correctly" in " ".join(
        panel.text_content().split()
    )
    charts = page.locator(".ineq-charts .chart svg.line-chart")
    assert charts.count() == 5
    for i in range(5):
        assert charts.nth(i).locator("path.lc-line").count() == 2
    assert page.locator(".ineq-gini tbody tr").count() == 2
    assert page.text_content(f".ineq-gini tr[data-run='{b}'] td.num") == "0.480"

    # a new document: after a hash change alone the two runs' panel (its form included) stays
    # on screen until the one run's is drawn (seen in a loaded run)
    page.goto(f"/?visit=one#/compare?ids={a}")
    page.wait_for_selector(".inequality-panel .ineq-form")
    assert page.locator(".ineq-results").inner_html() == ""
    page.fill(".ineq-form [name=n]", "50")
    page.click("text=Run inequality evaluation")
    page.wait_for_selector(".ineq-status:not([hidden]) >> text=queued")
    assert page.is_disabled(".ineq-form button")
    db.expire_all()
    (evaluation,) = db.query(InequalityEvaluation).filter_by(run_key=str(a)).all()
    assert evaluation.n_requested == 50 and evaluation.common_set is False

    evaluation.state, evaluation.progress = "running", 0.5
    db.commit()
    page.wait_for_selector(".ineq-status .progress[aria-valuenow='50']")
    evaluation.state, evaluation.progress = "succeeded", 1.0
    evaluation.result, evaluation.finished_at = result({a: 0.3}), utcnow()
    db.commit()
    caption = page.wait_for_selector(".ineq-caption.not-comparable")
    assert "not comparable across runs" in caption.text_content()
    assert page.is_hidden(".ineq-status") and page.is_enabled(".ineq-form button")
    assert page.locator(".ineq-charts .chart svg path.lc-line").count() == 5
