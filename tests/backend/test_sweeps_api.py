"""Sweeps through the API on PostgreSQL: a 2 x 2 grid with a baseline stored as one run per arm
and seed and sent to the workers a few at a time (other runs are not starved), a sentence per
wrong field, the preview's run count and time estimate, the table's figures (mean and
interval, paired differences, the verdict at a margin, failed runs left out) and its exports."""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import select

from backend.models import RunBatch, Sweep, TrainingRun, utcnow
from backend.schemas.sweeps import SweepCreate
from backend.services import run_lifecycle as lifecycle
from backend.services.runs import launch, sweeps
from runconfig import stats

TINY = {"model": "small_cnn", "epochs": 1, "batch_size": 8, "eval_subset": 8, "autoattack_n": 4}


def body(seeded, **extra):
    base = {"dataset_id": seeded["dataset_id"], "method": "sip_at", "mask_source": "gradcam"}
    return {
        "name": "share",
        "base": {**base, **TINY, **extra.pop("base", {})},
        "axes": [
            {"setting": "mask_fraction", "values": [0.25, 0.5]},
            {"setting": "eps", "values": [4 / 255, 8 / 255]},
        ],
        "seeds": [0, 1],
        "baseline": {"method": "pgd_at"},
        **extra,
    }  # fmt: skip


@pytest.fixture()
def auto_masks(seeded, db):
    """A finished standard run of the dataset: the model that makes SIP-AT's automatic maps."""
    run = TrainingRun(
        name="teacher",
        dataset_id=seeded["dataset_id"],
        method="standard",
        config={"model": "small_cnn", "method": "standard", "seed": 0},
        state="succeeded",
    )
    db.add(run)
    db.commit()
    return run.id


def sweep_body(seeded, auto_masks, **extra):
    out = body(seeded, **extra)
    out["base"]["auto_mask_run_id"] = auto_masks
    return out


def test_a_two_by_two_sweep_with_a_baseline_is_stored_and_sent_a_few_at_a_time(
    client, seeded, auth, db, auto_masks
):
    r = client.post("/api/sweeps", headers=auth["researcher"], json=sweep_body(seeded, auto_masks))
    assert r.status_code == 201, r.text
    sweep_id = r.json()["id"]
    db.expire_all()
    runs = db.scalars(select(TrainingRun).where(TrainingRun.sweep_id == sweep_id)).all()
    assert len(runs) == 10
    assert {r.method for r in runs} == {"sip_at", "pgd_at"}
    sent = [r for r in runs if r.celery_task_id is not None]
    assert len(sent) == db.get(Sweep, sweep_id).in_flight == 2
    # the baseline does not carry the SIP-AT run's automatic-mask model
    assert all(r.config["auto_mask_run_id"] is None for r in runs if r.method == "pgd_at")
    page = client.get(f"/api/sweeps/{sweep_id}", headers=auth["researcher"]).json()
    keys = [a["key"] for a in page["table"]["arms"]]
    assert keys == [
        "mask_fraction=0.25, eps=4/255",
        "mask_fraction=0.25, eps=8/255",
        "mask_fraction=0.5, eps=4/255",
        "mask_fraction=0.5, eps=8/255",
        "baseline",
    ]
    assert all(a["pending"] == 2 for a in page["table"]["arms"]) and not page["finished"]


def _axis(setting, values):
    return {"axes": [{"setting": setting, "values": values}]}


MANY = {
    "axes": [{"setting": "lr", "range": {"start": 0.001, "stop": 0.1, "count": 30}}],
    "seeds": list(range(17)),
}
SAME_AS_AN_ARM = {
    "baseline": {"mask_fraction": 0.25},
    "base": {"mask_fraction": 0.25},
    **_axis("lr", [0.1]),
}
ERRORS = [
    ("seed", _axis("seed", [1, 2]), "a sweep may not vary the seed"),
    ("mask_fraction", _axis("mask_fraction", []), "give at least one value"),
    (
        "mask_fraction",
        _axis("mask_fraction", [0.5, 0.5]),
        "each value may appear once; repeated: 0.5",
    ),
    ("mask_fraction", _axis("mask_fraction", [0.5, 2]), "must be between 0 and 1; got 2"),
    ("runs", MANY, "this sweep would launch 527 runs; at most 500 at once"),
    ("baseline", SAME_AS_AN_ARM, None),
]


@pytest.mark.parametrize(("field", "extra", "message"), ERRORS)
def test_each_wrong_field_gets_one_sentence(
    client, seeded, auth, auto_masks, field, extra, message
):
    before = client.get("/api/runs", headers=auth["researcher"]).json()["count"]
    r = client.post(
        "/api/sweeps", headers=auth["researcher"], json=sweep_body(seeded, auto_masks, **extra)
    )
    assert r.status_code == 422, r.text
    errors = {e["field"]: e["message"] for e in r.json()["errors"]}
    assert field in errors, errors
    if message:
        assert errors[field] == message
    assert r.json()["detail"].startswith("The sweep was not launched")
    assert client.get("/api/runs", headers=auth["researcher"]).json()["count"] == before


def test_preview_counts_runs_and_estimates_time_from_measured_rates(
    client, seeded, auth, db, auto_masks
):
    r = client.post(
        "/api/sweeps/preview", headers=auth["researcher"], json=sweep_body(seeded, auto_masks)
    )
    assert r.status_code == 200, r.text
    got = r.json()
    assert (got["runs"], got["arms"], got["seeds"]) == (10, 5, 2)
    assert got["estimated_s"] is None and "no estimate" in got["basis"]
    # one earlier run of each method measured 16 images per second
    for method in ("sip_at", "pgd_at"):
        run = TrainingRun(
            name="earlier",
            dataset_id=seeded["dataset_id"],
            method=method,
            config={"model": "small_cnn", "method": method},
            state="succeeded",
            started_at=utcnow(),
        )
        db.add(run)
        db.flush()
        db.add(RunBatch(run_id=run.id, step=1, epoch=1, loss=1.0, accuracy=0.5, images_per_s=16))
    db.commit()
    got = client.post(
        "/api/sweeps/preview", headers=auth["researcher"], json=sweep_body(seeded, auto_masks)
    ).json()
    train_images = sweeps._train_images(db, seeded["dataset_id"])
    assert got["estimated_s"] == pytest.approx(10 * 1 * train_images / 16)
    assert db.scalar(select(Sweep.id)) is None  # nothing stored


def test_a_sweep_does_not_starve_other_runs(seeded, db, users, auto_masks, monkeypatch):
    sent: list[int] = []

    def record(_task, run_id, _token):
        sent.append(run_id)
        return "task"

    monkeypatch.setattr(lifecycle, "enqueue", record)
    sweep = sweeps.create_sweep(
        db, users["researcher"].id, SweepCreate(**sweep_body(seeded, auto_masks)), record
    )
    first = list(sent)
    assert len(first) == 2
    single = launch.create_runs(
        db, users["researcher"].id, {"dataset_id": seeded["dataset_id"], **TINY}, record
    )
    assert sent[-1] == single[0].id  # sent at once, ahead of the sweep's other eight

    # one of the sweep's runs trains and ends: the next one of the sweep is sent
    def sent_of_sweep() -> int:
        db.expire_all()
        return len(
            db.scalars(
                select(TrainingRun.id).where(
                    TrainingRun.sweep_id == sweep.id, TrainingRun.celery_task_id.is_not(None)
                )
            ).all()
        )

    token = db.get(TrainingRun, first[0]).celery_task_id
    assert lifecycle.claim(db, first[0], token, "w", 600) is None
    assert lifecycle.finish(db, first[0], "succeeded", "")
    assert sent_of_sweep() == 3
    # cancelling a sent one frees its place too
    lifecycle.cancel_run(db, db.get(TrainingRun, first[1]))
    assert sent_of_sweep() == 4
    # and the recovery's pass sends nothing more while two are in flight
    assert lifecycle.release_all_held(db, record) == []


def _finish(db, run, clean, autoattack, state="succeeded"):
    run.state = state
    if state == "succeeded":
        run.final_metrics = {
            "final": {
                "clean_accuracy": clean,
                "autoattack": {"accuracy": autoattack, "after": {"apgd-ce": autoattack + 0.02}},
                "pgd_accuracy": {"0.031373": autoattack + 0.05},
            }
        }


def finished_sweep(client, seeded, auth, db, auto_masks):
    one_axis = {
        "axes": [{"setting": "mask_fraction", "values": [0.25, 0.5]}],
        "seeds": [0, 1, 2],
    }
    r = client.post(
        "/api/sweeps",
        headers=auth["researcher"],
        json=sweep_body(seeded, auto_masks, **one_axis),
    )
    assert r.status_code == 201, r.text
    sweep_id = r.json()["id"]
    db.expire_all()
    runs = db.scalars(
        select(TrainingRun).where(TrainingRun.sweep_id == sweep_id).order_by(TrainingRun.id)
    ).all()
    clean = {0.25: [0.90, 0.91, 0.92], 0.5: [0.88, 0.89, 0.90], None: [0.85, 0.86, 0.88]}
    for run in runs:
        share = run.config["mask_fraction"] if run.method == "sip_at" else None
        seed = run.config["seed"]
        if share == 0.5 and seed == 2:
            _finish(db, run, 0, 0, state="failed")
            continue
        _finish(db, run, clean[share][seed], 0.30 + 0.01 * seed)
    db.commit()
    return sweep_id, clean


def test_the_table_has_intervals_paired_differences_and_a_verdict(
    client, seeded, auth, db, auto_masks
):
    sweep_id, clean = finished_sweep(client, seeded, auth, db, auto_masks)
    page = client.get(
        f"/api/sweeps/{sweep_id}", headers=auth["researcher"], params={"margin": 10}
    ).json()
    assert page["finished"]
    table = page["table"]
    arms = {a["key"]: a for a in table["arms"]}
    quarter, half, base = arms["mask_fraction=0.25"], arms["mask_fraction=0.5"], arms["baseline"]
    assert (half["succeeded"], half["failed"], half["metrics"]["clean_accuracy"]["n"]) == (2, 1, 2)
    assert table["left_out"] == {"failed": 1, "cancelled": 0}
    expected = stats.mean_interval(clean[0.25])
    assert quarter["metrics"]["clean_accuracy"]["low"] == pytest.approx(expected.low)
    diff = quarter["paired"]["clean_accuracy"]
    t = stats.mean_interval([a - b for a, b in zip(clean[0.25], clean[None], strict=True)])
    assert (diff["mean"], diff["low"], diff["high"]) == (
        pytest.approx(t.mean),
        pytest.approx(t.low),
        pytest.approx(t.high),
    )
    assert diff["boot_low"] is not None and diff["n"] == 3
    assert diff["verdict"] == "equivalent" and diff["text"].startswith("equivalent within ±10")
    assert half["paired"]["clean_accuracy"]["seeds"] == [0, 1]
    assert "autoattack_after:apgd-ce" in table["metrics"]
    assert not base["paired"]


def test_exports(client, seeded, auth, db, auto_masks):
    sweep_id, _clean = finished_sweep(client, seeded, auth, db, auto_masks)
    url = f"/api/sweeps/{sweep_id}/export"
    runs_csv = client.get(url, headers=auth["researcher"], params={"level": "runs"})
    assert runs_csv.status_code == 200 and runs_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(runs_csv.text)))
    assert len(rows) == 9 and {r["state"] for r in rows} == {"succeeded", "failed"}
    arms_csv = client.get(url, headers=auth["researcher"], params={"margin": 2}).text
    arms = list(csv.DictReader(io.StringIO(arms_csv)))
    quarter = next(
        r for r in arms if r["arm"] == "mask_fraction=0.25" and r["metric"] == "clean_accuracy"
    )
    assert float(quarter["diff_mean"]) == pytest.approx(0.14 / 3) and quarter["verdict"]
    whole = client.get(url, headers=auth["researcher"], params={"format": "json"}).json()
    assert [a["key"] for a in whole["arms"]] == [
        "mask_fraction=0.25",
        "mask_fraction=0.5",
        "baseline",
    ]


def test_the_api_and_the_command_line_give_the_same_figures(
    client, seeded, auth, db, auto_masks, tmp_path, capsys
):
    """The same runs, read by the app from the database and by `python -m worker.sipat sweep`
    from their results files (metrics.json), give the same table."""
    import json

    from worker.sipat.cli import main

    sweep_id, _clean = finished_sweep(client, seeded, auth, db, auto_masks)
    api = client.get(
        f"/api/sweeps/{sweep_id}", headers=auth["researcher"], params={"margin": 3}
    ).json()["table"]
    for run in db.scalars(select(TrainingRun).where(TrainingRun.sweep_id == sweep_id)).all():
        if run.state == "succeeded":  # a failed run leaves no results file
            folder = tmp_path / f"run{run.id}"
            folder.mkdir()
            result = {"config": run.config, "final": run.final_metrics["final"]}
            (folder / "metrics.json").write_text(json.dumps(result))
    capsys.readouterr()
    argv = ["sweep", "--set", "mask_fraction=0.25,0.5", "--seeds", "0,1,2"]
    argv += ["--baseline", "method=pgd_at", "--out", str(tmp_path), "--results-only"]
    assert main([*argv, "--margin", "3", "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert [a["key"] for a in cli["arms"]] == [a["key"] for a in api["arms"]]
    assert cli["metrics"] == api["metrics"]
    for ours, theirs in zip(cli["arms"], api["arms"], strict=True):
        assert ours["metrics"] == theirs["metrics"]
        assert ours["paired"] == theirs["paired"]
        assert ours["succeeded"] == theirs["succeeded"]
    assert main(argv) == 0  # and the markdown table
    text = capsys.readouterr().out
    assert "| mask_fraction=0.25 | 3 (0, 0) |" in text
    assert "not shown to differ" in text or "differs" in text


def test_compare_groups_get_the_same_paired_intervals(client, seeded, auth, db, auto_masks):
    sweep_id, _clean = finished_sweep(client, seeded, auth, db, auto_masks)
    page = client.get(f"/api/sweeps/{sweep_id}", headers=auth["researcher"]).json()["table"]
    ids = ",".join(str(r["ref"]) for r in page["runs"])
    params = {"by": "mask_fraction", "ids": ids, "baseline": "1.0", "margin": 10}
    r = client.get("/api/runs/groups", headers=auth["researcher"], params=params)
    assert r.status_code == 200, r.text
    groups = {g["value"]: g for g in r.json()["groups"]}
    assert groups[1.0]["paired"] == {}
    ours = groups[0.25]["paired"]["clean_accuracy"]
    sweep_arm = page["arms"][0]["paired"]["clean_accuracy"]
    for key in ("mean", "low", "high", "boot_low", "boot_high", "n", "seeds"):
        assert ours[key] == pytest.approx(sweep_arm[key]), key
    assert ours["text"].startswith("equivalent within ±10 points")
    assert groups[0.25]["metrics"]["clean_accuracy"]["low"] is not None


def test_inequality_figures_join_the_sweep_and_compare(client, seeded, auth, db, auto_masks):
    """A run's latest finished inequality evaluation gives it one figure per test (the mean
    error rate over the test's levels), in the sweep's table and in compare's groups; a failed
    or older evaluation gives nothing."""
    from backend.models import InequalityEvaluation
    from runconfig import sweep as grid

    sweep_id, _clean = finished_sweep(client, seeded, auth, db, auto_masks)
    runs = db.scalars(
        select(TrainingRun)
        .where(TrainingRun.sweep_id == sweep_id, TrainingRun.state == "succeeded")
        .order_by(TrainingRun.id)
    ).all()
    baseline = [r for r in runs if r.method != "sip_at"]

    def evaluation(rates: dict[int, float], state: str = "succeeded") -> None:
        result = {
            str(rid): {
                "n": 8,
                "inductive_noise_added": {"0.1": rate, "0.3": rate + 0.2},
                "inductive_occlusion": {"grey": {"1": rate}},
            }
            for rid, rate in rates.items()
        }
        db.add(
            InequalityEvaluation(
                run_ids=list(rates), run_key=",".join(map(str, sorted(rates))),
                dataset_id=runs[0].dataset_id, n_requested=8, common_set=False, state=state,
                result={"runs": result} if state == "succeeded" else None,
            )
        )  # fmt: skip
        db.commit()

    evaluation({r.id: 0.9 for r in baseline})  # older: replaced by the next
    evaluation({r.id: 0.1 * k for k, r in enumerate(baseline)})
    evaluation({r.id: 0.5 for r in baseline}, state="failed")
    key, occluded = grid.INEQUALITY + "inductive_noise_added", grid.INEQUALITY + "occlusion_grey"
    table = client.get(f"/api/sweeps/{sweep_id}", headers=auth["researcher"]).json()["table"]
    assert key in table["metrics"] and occluded in table["metrics"]
    assert "noise added" in table["labels"][key]
    arms = {a["key"]: a for a in table["arms"]}
    expected = [0.1 * k + 0.1 for k in range(len(baseline))]  # mean of rate and rate + 0.2
    assert arms["baseline"]["metrics"][key]["mean"] == pytest.approx(sum(expected) / 3)
    assert arms["baseline"]["metrics"][key]["n"] == len(baseline) == 3
    assert key not in arms["mask_fraction=0.25"]["metrics"]  # its runs were not evaluated
    params = {"by": "method", "ids": ",".join(str(r.id) for r in runs)}
    groups = client.get("/api/runs/groups", headers=auth["researcher"], params=params).json()
    by_method = {g["value"]: g for g in groups["groups"]}
    assert by_method[baseline[0].method]["metrics"][occluded]["mean"] == pytest.approx(0.1)
    assert occluded not in by_method["sip_at"]["metrics"]
