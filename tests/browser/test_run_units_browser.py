"""One unit for people, in the browser: a run's page lists only the settings that apply to its
method, every budget in grey levels rounded for reading (no pixel-unit value, no "25.50/255"),
chart labels are inside their charts, a standard run shows no training epsilon, and the run
form's refusal names the value in /255. The real app on PostgreSQL; runs made in the
database (no worker needed)."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.browser

NOT_FOR_PGD_AT = ("mask_source", "mask_threshold", "mask_fraction", "mask_set_id",
                  "igd_lambda", "igd_grad_point", "igd_teacher_run_id", "part_eps_low",
                  "part_warmup_epochs", "fast_attack")  # fmt: skip
FINAL = {
    "clean_accuracy": 0.9,
    "n_test": 8,
    "robust_subset": 8,
    "pgd_steps": 5,
    "pgd_accuracy": {str(2 / 255): 0.8, str(8 / 255): 0.5, "0.2": 0.1},  # 0.2 = 51/255
    "large_eps": {"eps": 0.5, "accuracy": 0.0, "n": 8},
}
# the budgets of these runs in pixel units (8/255, 4/255, 2/255), or a grey level with a
# trailing zero ("25.50/255")
RAW_PIXELS = re.compile(r"0\.031|0\.015|0\.0078|\d\.\d*0/255")


def finished_run(db, dataset_id: int, **fields) -> int:
    from backend.models import RunEpoch, utcnow
    from backend.services.runs.launch import create_runs

    (run,) = create_runs(
        db, None, {"dataset_id": dataset_id, "epochs": 2, **fields}, enqueue_fn=lambda *a: "x"
    )
    run.state, run.finished_at, run.progress, run.current_epoch = "succeeded", utcnow(), 1.0, 2
    run.final_metrics = {"final": FINAL}
    for e in (1, 2):
        metrics = {"epoch": e, "train_loss": 1 / e, "train_accuracy": 0.5, "clean_accuracy": 0.6,
                   "robust_accuracy": 0.3, "robust_steps": 3}  # fmt: skip
        db.add(RunEpoch(run_id=run.id, epoch=e, metrics=metrics))
    db.commit()
    return run.id


def labels_outside_their_chart(page) -> list[str]:
    return page.evaluate(
        """() => [...document.querySelectorAll("svg.line-chart")].flatMap((svg) => {
          const b = svg.getBoundingClientRect();
          return [...svg.querySelectorAll("text")].filter((t) => {
            const a = t.getBoundingClientRect();
            return a.left < b.left - 0.5 || a.right > b.right + 0.5 || a.top < b.top - 0.5
              || a.bottom > b.bottom + 0.5;
          }).map((t) => t.textContent);
        })"""
    )


def config_rows(page) -> dict[str, str]:
    page.wait_for_selector(".run-config-table tr")
    rows = page.locator(".run-config-table tr")
    return {
        rows.nth(i).get_attribute("data-key"): rows.nth(i).locator("td").nth(1).inner_text()
        for i in range(rows.count())
    }


def test_a_pgd_at_run_reads_in_grey_levels(page, login, seeded, db):
    run_id = finished_run(db, seeded["dataset_id"], method="pgd_at", eps=8 / 255, alpha=2 / 255)
    login(page, "researcher")
    page.goto(f"/#/runs/{run_id}")
    page.wait_for_selector(".final-pgd svg")
    rows = config_rows(page)
    assert rows["eps"] == "8/255" and rows["alpha"] == "2/255"
    assert rows["eval_eps"] == "2/255, 4/255, 8/255"
    assert not [k for k in NOT_FOR_PGD_AT if k in rows], rows
    text = page.locator(".run-page").inner_text()
    assert not RAW_PIXELS.findall(text), RAW_PIXELS.findall(text)
    assert "ε 127.5/255:" in page.locator(".large-eps").inner_text()
    assert "0.5" not in page.locator(".large-eps").inner_text()
    grid = page.locator(".pgd-grid th").all_inner_texts()
    assert grid == ["ε", "2/255", "8/255", "51/255"], grid
    assert "pixel units" not in text
    ticks = page.locator(".final-pgd svg text.lc-tick").all_text_contents()
    assert "51/255" in ticks, ticks
    assert labels_outside_their_chart(page) == []


def test_a_standard_run_has_no_training_epsilon(page, login, seeded, db):
    run_id = finished_run(db, seeded["dataset_id"], method="standard")
    login(page, "researcher")
    page.goto(f"/#/runs/{run_id}")
    rows = config_rows(page)
    labels = page.locator(".run-config-table td:first-child").all_inner_texts()
    assert "training ε" not in labels and rows["eps"] == "8/255"
    assert not {"alpha", "steps", "eps_warmup_epochs"} & set(rows), rows
    assert "evaluated at ε 8/255" in page.locator(".run-head").inner_text()
    assert "train ε" not in page.locator(".run-page").inner_text()
    assert "train ε" not in (page.locator(".chart-acc").text_content() or "")
    page.goto("/#/runs")
    cell = page.locator(f"table.runs tr[data-run='{run_id}'] td.col-eps")
    assert cell.inner_text() == "–"
    assert "train ε" not in page.locator("table.runs thead").inner_text()


def test_the_form_speaks_grey_levels(page, login, seeded):
    login(page, "researcher")
    page.goto("/#/runs")
    page.click("button.new-run")
    form = page.locator("form.launch-form")
    assert form.locator("input[name=eps]").input_value() == "8"
    assert form.locator("input[name=alpha]").input_value() == "2"
    form.locator("select[name=method]").select_option("standard")
    assert form.locator("input[name=alpha]").is_hidden()
    assert form.locator(".eps-label").inner_text().startswith("Evaluation ε (/255")
    form.locator("select[name=method]").select_option("pgd_at")
    form.locator("input[name=eps]").fill("-5")
    form.locator("button[type=submit]").click()
    error = page.locator(".field-error[data-for=eps]")
    error.wait_for()
    page.wait_for_function("document.querySelector('.field-error[data-for=eps]').textContent")
    assert error.inner_text() == "must be between 0/255 and 255/255; got -5/255"
