"""A researcher launches a 2 x 2 sweep with a baseline arm from the runs page (SIP-AT's share of
images with a map over two values, seeds 0 and 1, against PGD-AT with the same seeds and
budget): the form previews the number of runs and names a bad value beside its field, a real
Celery worker trains the six runs, and the sweep's page shows each arm's mean and interval and
its paired difference against the baseline with the verdict at a margin, the same numbers as
the API gives. The real app (uvicorn), a real worker, Redis and PostgreSQL."""

from __future__ import annotations

import time
import uuid
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pytest

from tests.browser.test_runs_browser import (  # noqa: F401 (fixtures)
    quadrant_dataset_zip,
    runs_page,
    runs_server,
    training_worker,
)

pytestmark = pytest.mark.browser

MISSING = "–"
# tiny runs: one epoch of 60 images 16 x 16, PGD-2, PGD evaluation on 16 images at budgets large
# enough to tell the runs apart, no AutoAttack
FIELDS = {
    "epochs": "1",
    "batch_size": "16",
    "steps": "2",
    "lr": "0.05",
    "eval_subset": "16",
    "eval_steps": "2",
    "epoch_eval_steps": "1",
    "autoattack_n": "0",
    "eval_eps": "16, 48",
}


@pytest.fixture()
def masked_dataset(seeded, db):
    """A tiny four-class dataset with a frozen mask set over some of its training images."""
    from sqlalchemy import select

    from backend.core.security import hash_password
    from backend.core.storage import get_storage
    from backend.models import Image, User
    from backend.services.consensus import freeze_mask_set
    from backend.services.datasets import import_dataset, zip_entries
    from backend.services.masks import save_mask

    zipped = quadrant_dataset_zip(per_class=20, size=16)
    ds = import_dataset(db, get_storage(), zip_entries(zipped), name="shares", test_fraction=0.25)
    painter = User(
        username=f"painter-{uuid.uuid4().hex[:6]}",
        password_hash=hash_password("painter-pass"),
        role="annotator",
    )
    db.add(painter)
    db.commit()
    images = db.scalars(
        select(Image).where(Image.dataset_id == ds.id, Image.split == "train").order_by(Image.id)
    ).all()
    for image in images[:20]:
        mask = np.zeros((image.height, image.width), bool)
        mask[: image.height // 2, : image.width // 2] = True
        save_mask(db, painter, image, save_id=uuid.uuid4().hex, mask=mask, active_ms=1000,
                  check_queue=False, status_after="accepted")  # fmt: skip
    mask_set, _ = freeze_mask_set(
        db, ds, name="quarters", statuses=["accepted"], min_annotators=1, min_agreement=None,
        created_by=None,
    )  # fmt: skip
    return ds.id, mask_set.id


def _fixed(x: float, digits: int) -> str:
    """JavaScript's Number.prototype.toFixed of a non-negative number (ties away from 0)."""
    return str(Decimal(x).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


def percent(v) -> str:
    """lib/format.js percent."""
    if v is None:
        return MISSING
    x = v * 100
    return ("-" if x < 0 else "") + _fixed(abs(x), 1) + "%"


def points(v) -> str:
    """lib/format.js points."""
    if v is None:
        return MISSING
    text = _fixed(abs(v * 100), 1)
    sign = "" if float(text) == 0 else "+" if v > 0 else "-"
    return f"{sign}{text} pts"


def interval(low, high, show) -> str:
    return MISSING if low is None or high is None else f"{show(low)} to {show(high)}"


def test_launch_a_sweep_and_read_its_paired_intervals(
    runs_page,  # noqa: F811
    login,
    training_worker,  # noqa: F811
    masked_dataset,
):
    dataset_id, mask_set_id = masked_dataset
    page = runs_page
    login(page, "researcher")
    page.click("nav a[href='#/runs']")
    page.click("button.new-sweep")
    form = page.locator("form.sweep-form")
    form.locator("select[name=dataset_id]").select_option(str(dataset_id))
    form.locator("select[name=method]").select_option("sip_at")
    form.locator("select[name=model]").select_option("small_cnn")
    form.locator("select[name=mask_source]").select_option("human")
    form.locator(f"select[name=mask_set_id] option[value='{mask_set_id}']").wait_for(
        state="attached"
    )
    form.locator("select[name=mask_set_id]").select_option(str(mask_set_id))
    form.locator("input[name=name]").fill("mask share")
    form.locator("input[name=seeds]").fill("0, 1")
    for name, value in FIELDS.items():
        form.locator(f"input[name={name}]").fill(value)
    form.locator("select[name=sweep_setting_0]").select_option("mask_fraction")
    form.locator("input[name=sweep_values_0]").fill("0.5, 2")
    # the preview names the value out of bounds beside the swept setting, live
    error = form.locator(".axis-error[data-for=mask_fraction]")
    page.wait_for_function(
        "el => el.textContent.includes('between 0 and 1')", arg=error.element_handle()
    )
    form.locator("input[name=sweep_values_0]").fill("0.5, 1")
    form.locator("select[name=baseline_setting]").select_option("method")
    form.locator("select[name=baseline_value]").select_option("pgd_at")
    # 2 shares x 2 seeds, and the baseline arm's 2 runs
    try:
        form.locator(".sweep-preview .preview-runs[data-runs='6']").wait_for()
    except Exception as ex:
        said = form.locator(".sweep-preview").inner_text()
        marked = form.locator(".field-error, .axis-error").all_inner_texts()
        raise AssertionError(
            f"the preview never said 6 runs; it says {said!r} and the marked fields say {marked!r}"
        ) from ex
    assert error.inner_text() == ""
    assert "arms" in form.locator(".sweep-preview").inner_text()
    form.locator("button[type=submit]").click()

    page.wait_for_url("**/#/sweeps/*")
    sweep_id = int(page.url.rsplit("/", 1)[1])
    page.wait_for_selector(".sweep-status")
    started = time.monotonic()
    while time.monotonic() - started < 240:
        if page.locator(".sweep-status[data-finished=true]").count():
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"the sweep did not finish; worker log:\n{training_worker.log()}")
    print(f"\nsix tiny runs of the sweep: {time.monotonic() - started:.1f} s")

    # a margin: the page asks again and words the verdict as the API does
    margin = page.locator("input.margin-input")
    margin.fill("5")
    margin.press("Enter")
    page.wait_for_function("location.hash.endsWith('?margin=5')")
    page.wait_for_selector("table.sweep-table td.verdict:has-text('5 points')")

    got = page.request.get(f"/api/sweeps/{sweep_id}?margin=5")
    assert got.ok, got.text()
    data = got.json()
    table = data["table"]
    assert data["finished"] and table["margin_points"] == 5
    assert [a["key"] for a in table["arms"]] == [
        "mask_fraction=0.5",
        "mask_fraction=1",
        "baseline",
    ]
    assert all(a["succeeded"] == 2 for a in table["arms"])
    assert page.locator(".runs-succeeded").inner_text() == "6 succeeded"
    assert page.locator(".runs-failed").inner_text() == "0 failed"
    assert "clean_accuracy" in table["metrics"]
    assert not any(k.startswith("autoattack") for k in table["metrics"])  # skipped: n = 0
    for key in table["metrics"]:
        section = page.locator(f"section.sweep-metric[data-metric='{key}']")
        assert section.locator("h2").inner_text() == table["labels"][key]
        assert section.locator(".sweep-chart svg path.lc-line").count() == 2  # arms, baseline
        for arm in table["arms"]:
            row = section.locator(f"tr[data-arm='{arm['key']}']")
            stat = arm["metrics"][key]
            assert row.locator(".mean").inner_text() == percent(stat["mean"])
            assert row.locator(".interval").inner_text() == interval(
                stat["low"], stat["high"], percent
            )
            assert row.locator(".seeds .n").inner_text() == f"n = {stat['n']}"
            assert row.locator(".seed-list").inner_text() == "(seeds 0, 1)"
            if arm["baseline"]:
                continue
            paired = arm["paired"][key]
            assert paired["n"] == 2 and paired["seeds"] == [0, 1]
            assert row.locator(".diff").inner_text() == f"{points(paired['mean'])} n = 2"
            assert row.locator(".diff-t").inner_text() == interval(
                paired["low"], paired["high"], points
            )
            assert row.locator(".diff-boot").inner_text() == interval(
                paired["boot_low"], paired["boot_high"], points
            )
            assert row.locator(".verdict").inner_text() == paired["text"]

    # sortable: by the mean, highest first on a second click
    clean = page.locator("table.sweep-table[data-metric=clean_accuracy]")
    clean.locator("th[data-sort=mean]").click()
    clean.locator("th[data-sort=mean]").click()
    clean.locator("th[data-sort=mean]:has-text('▼')").wait_for()
    shown = [percent_value(t) for t in clean.locator("td.mean").all_inner_texts()]
    assert shown == sorted(shown, reverse=True)
    # every run listed, and the exports carry the margin
    assert page.locator("table.sweep-runs tbody tr").count() == 6
    href = page.locator("a.export-arms").get_attribute("href")
    assert href == f"/api/sweeps/{sweep_id}/export?format=csv&level=arms&margin=5"
    csv = page.request.get(href)
    assert csv.ok and csv.text().startswith("arm,metric,mean")
    check_compare_page(page, [r["ref"] for r in table["runs"]])
    # the runs page lists the sweep
    page.goto("/#/runs")
    page.click(".sweeps summary")
    page.click(f".sweep-list li[data-sweep='{sweep_id}'] a")
    page.wait_for_url(f"**/#/sweeps/{sweep_id}")


def check_compare_page(page, run_ids: list[int]) -> None:
    """The compare page, grouped by method with PGD-AT as the baseline group: each group minus
    it paired by seed, with the verdict at the margin, as GET /api/runs/groups gives them."""
    ids = ",".join(map(str, run_ids))
    page.goto(f"/#/compare?ids={ids}")
    page.locator("select.group-by").select_option("method")
    page.locator("select.baseline-group option[value=pgd_at]").wait_for(state="attached")
    page.locator("select.baseline-group").select_option("pgd_at")
    page.locator("input.group-margin").fill("5")
    page.locator("input.group-margin").press("Enter")
    page.wait_for_selector("table.paired-table td.verdict:has-text('5 points')")
    got = page.request.get(f"/api/runs/groups?by=method&ids={ids}&baseline=pgd_at&margin=5")
    assert got.ok, got.text()
    (sip,) = [g for g in got.json()["groups"] if g["value"] == "sip_at"]
    assert sip["paired"], sip
    for key, paired in sip["paired"].items():
        row = page.locator(f"table.paired-table tr[data-group=sip_at][data-metric='{key}']")
        show = percent_value_of(key)
        assert row.locator(".diff").inner_text() == show(paired["mean"])
        assert row.locator(".diff-t").inner_text() == interval(paired["low"], paired["high"], show)
        boot = interval(paired["boot_low"], paired["boot_high"], show)
        assert row.locator(".diff-boot").inner_text() == boot
        assert row.locator(".verdict").inner_text() == paired["text"]


def percent_value_of(key: str):
    """How the compare page writes a difference: losses as numbers, shares in points."""
    if "loss" in key:
        return lambda v: MISSING if v is None else ("-" if v < 0 else "") + _fixed(abs(v), 3)
    return points


def percent_value(text: str) -> float:
    return float(text.rstrip("%"))
