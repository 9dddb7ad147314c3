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
