"""A researcher uploads CUB-200-2011 as distributed (zipped CUB_200_2011 folder with its
segmentations) on the datasets page, sees its classes and the imported masks, freezes them
into a mask set on the dataset page and trains SIP-AT with that mask set from the runs page:
the real app, a real Celery worker, PostgreSQL and Redis."""

from __future__ import annotations

import re
import time

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from tests.backend.test_dataset_formats import CUB_CLASSES, CUB_IMAGES, cub_tree, zip_tree
from tests.browser.conftest import sign_in
from tests.browser.test_runs_browser import runs_page, runs_server, training_worker

pytestmark = pytest.mark.browser
# the worker starting beside the app and the first /api/runs/defaults (both import PyTorch)
# are slow on a 2-core machine
WAIT = 30_000
LOADED = 'table.runs tbody tr[data-run], table.runs tbody td.muted:not(:has-text("Loading"))'
__all__ = ["runs_page", "runs_server", "training_worker"]  # fixtures shared with the runs test


def test_cub_upload_masks_mask_set_and_a_sip_at_run(runs_page, training_worker, users, db,
                                                    tmp_path):  # fmt: skip
    from backend.models import MaskSet, TrainingRun

    page = runs_page
    archive = zip_tree(cub_tree(tmp_path / "src"), tmp_path / "CUB_200_2011.zip")
    sign_in(page, "researcher")
    page.goto("/#/datasets")
    expect(page.locator(".upload-form .formats")).to_contain_text("CUB-200-2011", timeout=WAIT)
    page.fill(".upload-form input[name=name]", "cub-mini")
    page.set_input_files(".upload-form input[name=file]", str(archive))
    with page.expect_response(lambda r: r.url.endswith("/api/datasets/import")) as resp:
        page.click(".upload-form button[type=submit]")
    assert resp.value.status == 201, resp.value.text()
    expect(page.locator(".upload-form .form-ok")).to_contain_text(
        "3 images in 2 classes", timeout=WAIT
    )

    page.locator("table.datasets a", has_text="cub-mini").click()
    expect(page).to_have_url(re.compile(r"#/datasets/\d+$"), timeout=WAIT)
    dataset_id = int(page.url.rsplit("/", 1)[1])
    expect(page.locator("h1")).to_have_text("cub-mini", timeout=WAIT)
    expect(page.locator(".page > p.muted").first).to_contain_text("train 2 / test 1", timeout=WAIT)
    classes = page.locator("table.classes tbody tr")
    expect(classes).to_have_count(2, timeout=WAIT)
    for i, name in enumerate(CUB_CLASSES.values()):
        expect(classes.nth(i)).to_contain_text(name, timeout=WAIT)
    # every image carries its imported mask
    expect(page.locator(".thumbs figcaption", has_text="1 mask")).to_have_count(
        len(CUB_IMAGES), timeout=WAIT
    )
    page.get_by_role("button", name="Compute").click()
    annotators = page.locator("table.annotators tbody tr")
    expect(annotators).to_have_count(1, timeout=WAIT)
    expect(annotators.locator("td").nth(0)).to_have_text("import:cub-200-2011", timeout=WAIT)
    expect(annotators.locator("td").nth(1)).to_have_text("3", timeout=WAIT)

    page.fill("form.freeze input[name=name]", "cub segmentations")
    page.get_by_role("button", name="Freeze consensus").click()
    row = page.locator("table.sets tbody tr", has_text="cub segmentations")
    expect(row).to_have_count(1, timeout=WAIT)
    expect(row.locator("td.num")).to_have_text("3", timeout=WAIT)
    mask_set = db.scalar(sa.select(MaskSet).where(MaskSet.dataset_id == dataset_id))
    assert mask_set is not None and mask_set.num_images == 3

    page.click("nav a[href='#/runs']")
    page.wait_for_selector(LOADED)
    page.click("button.new-run")
    form = page.locator("form.launch-form")
    # the only dataset is chosen already: choosing it again would reload the mask-set choices
    # (and could drop the selection made below while they load)
    expect(form.locator("select[name=dataset_id]")).to_have_value(str(dataset_id), timeout=WAIT)
    form.locator("select[name=method]").select_option("sip_at")
    form.locator("select[name=mask_source]").select_option("human")
    form.locator("select[name=model]").select_option("small_cnn")
    form.locator("input[name=name]").fill("sip-at on cub")
    for name, value in {"image_size": "32", "epochs": "1", "batch_size": "2", "steps": "2",
                        "eval_subset": "1", "eval_steps": "2", "eval_restarts": "1",
                        "epoch_eval_steps": "1", "autoattack_n": "0"}.items():  # fmt: skip
        form.locator(f"input[name={name}]").fill(value)
    mask_sets = form.locator("select[name=mask_set_id]")
    expect(mask_sets.locator(f"option[value='{mask_set.id}']")).to_have_count(1, timeout=WAIT)
    mask_sets.select_option(str(mask_set.id))
    expect(mask_sets).to_have_value(str(mask_set.id), timeout=WAIT)
    form.locator("button[type=submit]").click()

    page.wait_for_url("**/#/runs/*")
    run_id = int(page.url.rsplit("/", 1)[1])
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        state = page.locator(".run-head .state").get_attribute("data-state")
        if state == "succeeded":
            break
        assert state in ("queued", "running"), page.locator(".run-head").inner_text()
        time.sleep(0.5)
    else:
        pytest.fail(f"the run did not finish; worker log:\n{training_worker.log()}")
    db.expire_all()
    run = db.get(TrainingRun, run_id)
    assert run.method == "sip_at" and run.mask_set_id == mask_set.id
    assert run.reproducibility["mask_set_hash"] == mask_set.hash
    # both training images train with their CUB segmentation
    assert run.reproducibility["train_images_with_map"] == 2, run.reproducibility
