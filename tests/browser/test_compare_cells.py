"""The compare page's final results say why a cell is empty, name the images each figure is
on, and flag a model at chance."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from .conftest import sign_in
from .test_inequality_browser import make_run

pytestmark = pytest.mark.browser


def test_empty_cells_say_why_and_a_model_at_chance_is_flagged(page, seeded, db):
    ds = seeded["dataset_id"]
    good = {"clean_accuracy": 0.91, "n_test": 400, "num_classes": 10}
    guessing = {"clean_accuracy": 0.105, "n_test": 400, "num_classes": 10}
    ids = {
        "good": make_run(db, ds, "learnt", final=good),
        "chance": make_run(db, ds, "guessing", final=guessing),
        "cancelled": make_run(db, ds, "stopped", state="cancelled"),
    }
    sign_in(page, "researcher")
    page.goto(f"/#/compare?ids={','.join(map(str, ids.values()))}")
    row = {k: page.locator(f"table.final-results tr[data-run='{v}']") for k, v in ids.items()}
    expect(row["good"].locator(".col-clean")).to_have_text("91.0% n 400")
    expect(row["good"].locator(".chance-badge")).to_have_count(0)
    expect(row["chance"].locator(".chance-badge")).to_have_text("at chance (10.0%)")
    for cell in (".col-clean", ".col-autoattack", ".col-pgd", ".col-agreement"):
        expect(row["cancelled"].locator(cell)).to_have_text("cancelled")
    # finished, but a run without a mask set has no agreement with human masks to measure
    expect(row["good"].locator(".col-agreement")).to_have_text("no mask set for this run")
    expect(row["good"].locator(".col-autoattack")).to_have_text("not run")


AUTOATTACK = {
    "n": 20, "accuracy": 0.1, "clean": 0.75, "version": "standard", "eps": 8 / 255,
    "package": "pyautoattack 0.1", "attacks": ["apgd-ce"], "after": {"apgd-ce": 0.1},
    "iterations": 100, "target_classes": 9, "square_queries": 5000, "seed": 0,
}  # fmt: skip


def test_runs_table_and_run_page_say_why_flag_chance_and_name_subsets(page, seeded, db):
    """The runs table and a run's page read their figures as compare does (issue 29): an empty
    cell says why, a model at chance is flagged, a figure on a subset names it, and a PGD-AT
    run's reproducibility record lists no SIP-AT fields, as a table; at 900 px the runs table
    scrolls inside its own box and the page does not."""
    from backend.models import TrainingRun

    ds = seeded["dataset_id"]
    guessing = {"clean_accuracy": 0.105, "n_test": 400, "num_classes": 10, "autoattack": AUTOATTACK}
    chance = make_run(db, ds, "guessing", final=guessing)
    cancelled = make_run(db, ds, "stopped", state="cancelled")
    run = db.get(TrainingRun, chance)
    run.reproducibility = {
        "seed": 0, "mask_set_id": None, "mask_set_hash": None, "mask_fraction": 1.0,
        "mask_source": "human", "train_images_with_map": None, "igd_teacher_run_id": None,
        "packages": {"torch": "2.5.0", "numpy": "2.1.0"}, "gpu_ids": ["cpu"],
    }  # fmt: skip
    db.commit()
    sign_in(page, "researcher")
    page.set_viewport_size({"width": 900, "height": 800})
    page.goto("/#/runs")
    page.locator("details.columns summary").click()
    agreement = page.locator("details.columns input[value=agreement]")
    if not agreement.is_checked():
        agreement.check()
    row = {
        k: page.locator(f"table.runs tr[data-run='{v}']")
        for k, v in (("chance", chance), ("cancelled", cancelled))
    }
    expect(row["chance"].locator(".col-clean")).to_contain_text("10.5% n 400")
    expect(row["chance"].locator(".chance-badge")).to_have_text("at chance (10.0%)")
    expect(row["chance"].locator(".col-agreement")).to_have_text("no mask set for this run")
    for cell in (".col-clean", ".col-autoattack", ".col-pgd", ".col-agreement"):
        expect(row["cancelled"].locator(cell)).to_have_text("cancelled")
    # 900 px wide: the page does not scroll sideways; the table may, inside its box, with
    # every header whole
    fit = page.evaluate("""() => {
      const box = document.querySelector("runs-table");
      return { page: document.documentElement.scrollWidth - document.documentElement.clientWidth,
               right: box.getBoundingClientRect().right - document.documentElement.clientWidth,
               clipped: [...box.querySelectorAll("th")]
                 .filter((th) => th.scrollWidth > th.clientWidth + 1).map((th) => th.innerText) };
    }""")
    assert fit == {"page": 0, "right": fit["right"], "clipped": []} and fit["right"] <= 0, fit

    page.goto(f"/#/runs/{cancelled}")
    expect(page.locator(".run-final")).to_have_text("No final evaluation: the run was cancelled.")
    page.goto(f"/#/runs/{chance}")
    expect(page.locator(".run-final .chance-badge")).to_have_text("at chance (10.0%)")
    expect(page.locator(".aa-subset")).to_contain_text(
        "AutoAttack runs on 20 of the 400 test images"
    )
    expect(page.locator(".aa-breakdown th").first).to_have_text("clean (20 images)")
    expect(page.locator(".final-agreement-none")).to_contain_text("no mask set for this run")
    expect(page.locator(".final-pgd")).to_have_text("PGD: not measured.")
    record = page.locator(".run-repro")
    expect(record.locator("table.kv table.kv td", has_text="torch")).to_have_count(1)
    keys = record.locator("table.kv > tbody > tr > td:first-child").all_inner_texts()
    assert not {k for k in keys if "mask" in k or "map" in k or "teacher" in k}, keys
    assert not [t for t in record.locator("td").all_inner_texts() if t.strip()[:1] in "{["], keys
