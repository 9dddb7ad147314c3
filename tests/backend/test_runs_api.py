"""The runs API on PostgreSQL (messages go to the test Redis; no worker consumes them here):
per-field validation, roles, mask lineage, seed groups, clone, cancel/retry, compare, groups,
orphan detection."""

from __future__ import annotations

import statistics
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from backend.models import MaskSet, RunEpoch, TrainingRun, utcnow

SMALL = {"model": "small_cnn", "epochs": 2, "batch_size": 8, "eval_subset": 8, "eval_steps": 2}


def launch(client, headers, **fields):
    return client.post("/api/runs", headers=headers, json=fields)


def run_count(db) -> int:
    db.expire_all()
    return db.scalar(select(func.count()).select_from(TrainingRun))


def make_mask_set(db, dataset_id: int, hash_: str = "a" * 64) -> MaskSet:
    ms = MaskSet(dataset_id=dataset_id, name="frozen", filter={}, hash=hash_, num_images=0)
    db.add(ms)
    db.commit()
    return ms


def make_other_dataset(client, auth) -> int:
    from tests.conftest import tiny_imagefolder_zip

    r = client.post(
        "/api/datasets/import",
        headers=auth["researcher"],
        data={"name": "other"},
        files={"file": ("o.zip", tiny_imagefolder_zip(per_class=2, size=16), "application/zip")},
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


def finish(db, run_id: int, method: str | None = None, **metrics) -> None:
    run = db.get(TrainingRun, run_id)
    run.state = "succeeded"
    if method:
        run.method = method
        run.config = {**run.config, "method": method}
    run.final_metrics = {"final": metrics}
    db.commit()


BAD_FIELDS = [
    ("method", {"method": "magic"}),
    ("model", {"model": "gpt"}),
    ("eps", {"eps": 3}),
    ("alpha", {"alpha": -0.1}),
    ("steps", {"steps": 0}),
    ("epochs", {"epochs": 0}),
    ("epochs", {"epochs": 10_000}),
    ("batch_size", {"batch_size": 0}),
    ("lr", {"lr": 0}),
    ("schedule", {"schedule": "sometimes"}),
    ("mask_fraction", {"mask_fraction": 1.5}),
    ("eval_eps", {"eval_eps": [0.5, 2.0]}),
    ("eval_eps", {"eval_eps": []}),
    ("seeds", {"seeds": [1, 1]}),
    ("seeds", {"seeds": []}),
    ("seeds", {"seed": 3, "seeds": [1, 2]}),
    ("seed", {"seed": -1}),
    ("tags", {"tags": [" "]}),
    ("mask_set_id", {"method": "sip_at"}),
    ("mask_set_id", {"method": "pgd_at", "mask_set_id": 999}),
    ("auto_mask_run_id", {"method": "sip_at", "mask_source": "gradcam"}),
    ("auto_mask_run_id", {"method": "sip_at", "mask_source": "gradcam", "auto_mask_run_id": 999}),
    ("auto_mask_run_id", {"method": "pgd_at", "auto_mask_run_id": 1}),
    ("igd_teacher_run_id", {"method": "igd"}),
    ("igd_teacher_run_id", {"method": "pgd_at", "igd_teacher_run_id": 1}),
    ("part_eps_low", {"method": "part", "eps": 2 / 255, "part_eps_low": 4 / 255}),
    ("mask_source", {"method": "sip_at", "mask_source": "oracle"}),
    ("batch_size", {"batch_size": "many"}),
    ("eps_warmup_epochs", {"eps_warmup_epochs": -1}),
    ("eps_warmup_epochs", {"epochs": 2, "eps_warmup_epochs": 3}),
    ("fast_attack", {"fast_attack": "pgd"}),
    ("eval_restarts", {"eval_restarts": 0}),
    ("eval_restarts", {"eval_restarts": 101}),
    ("epoch_eval_steps", {"epoch_eval_steps": 0}),
    ("autoattack_n", {"autoattack_n": -1}),
    ("autoattack_n", {"autoattack_n": 100_001}),
    ("gpus", {"gpus": 0}),
    ("gpus", {"gpus": 9}),
    ("gpus", {"gpus": "two"}),
    ("gpus", {"gpus": 1.5}),
]


@pytest.mark.parametrize(
    ("field", "bad"), BAD_FIELDS, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_FIELDS)]
)
def test_each_bad_field_is_named_and_nothing_is_stored(client, seeded, auth, db, field, bad):
    r = launch(client, auth["researcher"], dataset_id=seeded["dataset_id"], **{**SMALL, **bad})
    assert r.status_code == 422, r.text
    body = r.json()
    assert [e["field"] for e in body["errors"]] == [field], body
    assert all(e["message"] for e in body["errors"])
    assert field in body["detail"] and body["detail"].endswith(".")
    assert run_count(db) == 0


def test_several_bad_fields_are_all_named(client, seeded, auth, db):
    r = launch(
        client,
        auth["researcher"],
        dataset_id=seeded["dataset_id"],
        eps=2,
        epochs=0,
        schedule="x",
        seeds=[4, 4],
        method="sip_at",
    )
    assert r.status_code == 422
    fields = {e["field"] for e in r.json()["errors"]}
    assert fields == {"eps", "epochs", "schedule", "seeds", "mask_set_id"}
    assert run_count(db) == 0


def test_unknown_dataset_and_foreign_mask_set(client, seeded, auth, db):
    r = launch(client, auth["researcher"], dataset_id=424242, **SMALL)
    assert [e["field"] for e in r.json()["errors"]] == ["dataset_id"]
    other = make_other_dataset(client, auth)
    ms = make_mask_set(db, other)
    r = launch(
        client,
        auth["researcher"],
        dataset_id=seeded["dataset_id"],
        method="sip_at",
        mask_set_id=ms.id,
        **SMALL,
    )
    assert r.status_code == 422
    assert r.json()["errors"] == [
        {"field": "mask_set_id", "message": "this mask set belongs to another dataset"}
    ]


def test_roles(client, seeded, auth):
    ok = launch(client, auth["admin"], dataset_id=seeded["dataset_id"], **SMALL)
    assert ok.status_code == 201
    r = launch(client, auth["annotator"], dataset_id=seeded["dataset_id"], **SMALL)
    assert r.status_code == 403
    assert client.get("/api/runs", headers=auth["annotator"]).status_code == 403
    run_id = ok.json()["data"][0]["id"]
    assert client.get(f"/api/runs/{run_id}", headers=auth["annotator"]).status_code == 403
    assert client.post(f"/api/runs/{run_id}/cancel", headers=auth["annotator"]).status_code == 403


def test_launch_stores_the_library_config_and_lineage(client, seeded, auth, db):
    ms = make_mask_set(db, seeded["dataset_id"], "b" * 64)
    r = launch(
        client,
        auth["researcher"],
        dataset_id=seeded["dataset_id"],
        method="sip_at",
        mask_set_id=ms.id,
        mask_fraction=0.5,
        seed=7,
        tags=["sweep"],
        name="masked",
        **SMALL,
    )
    assert r.status_code == 201, r.text
    (run,) = r.json()["data"]
    assert run["state"] == "queued" and run["mask_set_id"] == ms.id and run["name"] == "masked"
    detail = client.get(f"/api/runs/{run['id']}", headers=auth["researcher"]).json()
    assert detail["reproducibility"]["mask_set_hash"] == "b" * 64
    assert detail["reproducibility"]["mask_set_id"] == ms.id
    assert detail["config"]["seed"] == 7 and detail["config"]["mask_fraction"] == 0.5
    assert detail["config"]["eps"] == pytest.approx(8 / 255)  # the library default
    # the stored config is a valid library config once the worker adds paths
    from worker.sipat import TrainConfig

    lib = {k: v for k, v in detail["config"].items() if not k.endswith("_id")}
    TrainConfig.from_dict({**lib, "data_dir": "/x"})
    row = db.get(TrainingRun, run["id"])
    assert row.celery_task_id  # dispatch token committed before the message was sent


def test_defaults_and_launch_carry_the_evaluation_settings(client, seeded, auth, db):
    h = auth["researcher"]
    defaults = client.get("/api/runs/defaults", headers=h).json()["defaults"]
    # the library's: PGD-20 with one restart at the end, PGD-10 per epoch, AutoAttack on 500
    assert {k: defaults[k] for k in ("eval_steps", "eval_restarts", "epoch_eval_steps")} == {
        "eval_steps": 20,
        "eval_restarts": 1,
        "epoch_eval_steps": 10,
    }
    assert defaults["autoattack_n"] is None  # the worker's device decides: 1000 GPU, 200 CPU
    r = launch(
        client,
        h,
        dataset_id=seeded["dataset_id"],
        **{**SMALL, "autoattack_n": 16, "eval_restarts": 3, "epoch_eval_steps": 4},
    )
    assert r.status_code == 201, r.text
    config = db.get(TrainingRun, r.json()["data"][0]["id"]).config
    evaluation = {k: config[k] for k in ("autoattack_n", "eval_restarts", "epoch_eval_steps")}
    assert evaluation == {"autoattack_n": 16, "eval_restarts": 3, "epoch_eval_steps": 4}
    skipped = launch(client, h, dataset_id=seeded["dataset_id"], **{**SMALL, "autoattack_n": 0})
    assert skipped.status_code == 201 and skipped.json()["data"][0]["config"]["autoattack_n"] == 0


def test_gpus_are_offered_checked_with_a_sentence_and_stored(client, seeded, auth, db):
    h = auth["researcher"]
    served = client.get("/api/runs/defaults", headers=h).json()
    assert served["defaults"]["gpus"] == 1 and served["defaults"]["sync_batchnorm"] is False
    assert served["choices"]["gpus"] == list(range(1, 9))
    for bad in (0, 9, -2):
        r = launch(client, h, dataset_id=seeded["dataset_id"], **SMALL, gpus=bad)
        assert r.status_code == 422, r.text
        (error,) = r.json()["errors"]
        assert error == {
            "field": "gpus",
            "message": f"must be a whole number of GPUs from 1 to 8 (one process each); got {bad}",
        }
        assert r.json()["detail"] == "The run was not launched: check gpus."
    assert run_count(db) == 0
    r = launch(client, h, dataset_id=seeded["dataset_id"], **SMALL, gpus=4, sync_batchnorm=True)
    assert r.status_code == 201, r.text
    config = db.get(TrainingRun, r.json()["data"][0]["id"]).config
    assert config["gpus"] == 4 and config["sync_batchnorm"] is True
    plain = launch(client, h, dataset_id=seeded["dataset_id"], **SMALL)
    assert plain.json()["data"][0]["config"]["gpus"] == 1


def test_seeds_make_one_group(client, seeded, auth):
    r = launch(
        client,
        auth["researcher"],
        dataset_id=seeded["dataset_id"],
        seeds=[1, 2, 3],
        name="sweep",
        **SMALL,
    )
    assert r.status_code == 201
    runs = r.json()["data"]
    assert len(runs) == 3 and len({x["group_key"] for x in runs}) == 1
    assert sorted(x["config"]["seed"] for x in runs) == [1, 2, 3]
    ids = ",".join(str(x["id"]) for x in runs)
    cmp = client.get("/api/runs/compare", headers=auth["researcher"], params={"ids": ids}).json()
    assert set(cmp["differences"]) == {"seed"}
    listed = client.get(
        "/api/runs", headers=auth["researcher"], params={"group_key": runs[0]["group_key"]}
    ).json()
    assert listed["count"] == 3


def test_compare_shows_only_differences(client, seeded, auth):
    a = launch(client, auth["researcher"], dataset_id=seeded["dataset_id"], **SMALL).json()["data"][
        0
    ]
    b = launch(
        client,
        auth["researcher"],
        dataset_id=seeded["dataset_id"],
        **{**SMALL, "eps": 16 / 255, "method": "standard"},
    ).json()["data"][0]
    cmp = client.get(
        "/api/runs/compare", headers=auth["researcher"], params={"ids": f"{a['id']},{b['id']}"}
    ).json()
    assert set(cmp["differences"]) == {"eps", "method"}
    assert cmp["differences"]["method"] == ["pgd_at", "standard"]
    for key, value in cmp["same"].items():
        assert a["config"].get(key, value) == value or key == "dataset_id"
    bad = client.get("/api/runs/compare", headers=auth["researcher"], params={"ids": "x"})
    assert bad.status_code == 422
    missing = client.get("/api/runs/compare", headers=auth["researcher"], params={"ids": "999"})
    assert missing.status_code == 404 and missing.json()["detail"] == "Run not found."


def test_group_mean_and_std_across_seeds(client, seeded, auth, db):
    runs = launch(
        client, auth["researcher"], dataset_id=seeded["dataset_id"], seeds=[0, 1, 2], **SMALL
    ).json()["data"]
    clean = [0.5, 0.7, 0.9]
    for run, c in zip(runs, clean, strict=True):
        finish(db, run["id"], clean_accuracy=c, pgd_accuracy={"0.0313725": c / 2})
    other = launch(
        client,
        auth["researcher"],
        dataset_id=seeded["dataset_id"],
        **{**SMALL, "method": "standard"},
    ).json()["data"][0]
    finish(db, other["id"], clean_accuracy=0.95, pgd_accuracy={"0.0313725": 0.0})
    r = client.get("/api/runs/groups", headers=auth["researcher"], params={"by": "method"}).json()
    groups = {g["value"]: g for g in r["groups"]}
    assert set(groups) == {"pgd_at", "standard"}
    stat = groups["pgd_at"]["metrics"]["clean_accuracy"]
    assert stat["n"] == 3
    assert stat["mean"] == pytest.approx(statistics.mean(clean))
    assert stat["std"] == pytest.approx(statistics.stdev(clean))
    assert groups["pgd_at"]["metrics"]["pgd_accuracy@0.0313725"]["mean"] == pytest.approx(0.35)
    assert groups["standard"]["metrics"]["clean_accuracy"]["std"] == 0.0
    assert sorted(groups["pgd_at"]["seeds"]) == [0, 1, 2]


def test_groups_average_autoattack_and_keep_pgd(client, seeded, auth, db):
    h = auth["researcher"]
    runs = launch(client, h, dataset_id=seeded["dataset_id"], seeds=[0, 1, 2], **SMALL).json()[
        "data"
    ]
    autoattack = [0.2, 0.3, 0.4]
    for run, aa in zip(runs, autoattack, strict=True):
        finish(
            db,
            run["id"],
            clean_accuracy=0.8,
            pgd_accuracy={"0.0313725": aa + 0.05},
            autoattack={"attack": "AutoAttack", "n": 16, "accuracy": aa},
        )
    # a run finished before AutoAttack was part of every run: no AutoAttack number, no error
    old = launch(
        client, h, dataset_id=seeded["dataset_id"], **{**SMALL, "method": "standard"}
    ).json()["data"][0]
    finish(db, old["id"], clean_accuracy=0.95, pgd_accuracy={"0.0313725": 0.0})
    ids = ",".join(str(r["id"]) for r in [*runs, old])
    r = client.get("/api/runs/groups", headers=h, params={"by": "method", "ids": ids}).json()
    groups = {g["value"]: g["metrics"] for g in r["groups"]}
    stat = groups["pgd_at"]["autoattack_accuracy"]
    assert stat["n"] == 3
    assert stat["mean"] == pytest.approx(statistics.mean(autoattack))
    assert stat["std"] == pytest.approx(statistics.stdev(autoattack))
    assert groups["pgd_at"]["pgd_accuracy@0.0313725"]["mean"] == pytest.approx(0.35)
    assert "autoattack_accuracy" not in groups["standard"]
    assert groups["standard"]["pgd_accuracy@0.0313725"]["mean"] == 0.0


def test_cancel_retry_clone(client, seeded, auth, db):
    h = auth["researcher"]
    run = launch(client, h, dataset_id=seeded["dataset_id"], seed=5, tags=["a"], **SMALL).json()[
        "data"
    ][0]
    token = db.get(TrainingRun, run["id"]).celery_task_id
    r = client.post(f"/api/runs/{run['id']}/cancel", headers=h)
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    again = client.post(f"/api/runs/{run['id']}/cancel", headers=h)
    assert again.status_code == 409
    assert again.json()["detail"] == "Only a queued or running run can be cancelled."
    r = client.post(f"/api/runs/{run['id']}/retry", headers=h)
    assert r.status_code == 200 and r.json()["state"] == "queued"
    assert r.json()["cancel_requested"] is False
    db.expire_all()
    assert db.get(TrainingRun, run["id"]).celery_task_id != token
    assert client.post(f"/api/runs/{run['id']}/retry", headers=h).status_code == 409
    # clone -> launch gives the same config
    form = client.get(f"/api/runs/{run['id']}/clone", headers=h).json()["form"]
    clone = client.post("/api/runs", headers=h, params={"cloned_from": run["id"]}, json=form)
    assert clone.status_code == 201, clone.text
    new = clone.json()["data"][0]
    assert (
        new["config"] == run["config"]
        and new["tags"] == ["a"]
        and new["cloned_from_id"] == run["id"]
    )


def test_list_filters_and_sort(client, seeded, auth, db):
    h = auth["researcher"]
    launch(client, h, dataset_id=seeded["dataset_id"], name="b", tags=["x"], **SMALL)
    launch(client, h, dataset_id=seeded["dataset_id"], name="a", method="standard", **SMALL)
    launch(client, h, dataset_id=seeded["dataset_id"], name="c", tags=["x", "y"], **SMALL)

    def names(**p):
        return [r["name"] for r in client.get("/api/runs", headers=h, params=p).json()["data"]]

    assert names(sort="name") == ["a", "b", "c"]
    assert names(sort="-name") == ["c", "b", "a"]
    assert names(method="standard") == ["a"]
    assert sorted(names(tag="x")) == ["b", "c"]
    assert names(state="running") == []
    assert len(names(dataset_id=seeded["dataset_id"])) == 3


def test_orphaned_run_is_requeued_then_given_up(client, seeded, auth, db):
    from backend.core.config import get_settings
    from worker.recovery import recover_once

    def recover() -> None:  # one pass of the workers' recovery timer (worker/recovery.py)
        recover_once(get_settings())

    h = auth["researcher"]
    run_id = launch(client, h, dataset_id=seeded["dataset_id"], **SMALL).json()["data"][0]["id"]
    run = db.get(TrainingRun, run_id)
    stale = utcnow() - timedelta(hours=2)
    run.state, run.heartbeat_at, run.attempts, run.worker_hostname = (
        "running",
        stale,
        1,
        "gone@host",
    )
    token = run.celery_task_id
    db.commit()
    client.get("/api/runs", headers=h)  # reading the table moves nothing
    db.expire_all()
    assert db.get(TrainingRun, run_id).celery_task_id == token
    recover()
    db.expire_all()
    run = db.get(TrainingRun, run_id)
    assert run.state == "queued" and run.celery_task_id != token
    assert "went silent" in run.log_tail
    # the run's page says when and why it was sent again
    detail = client.get(f"/api/runs/{run_id}", headers=h).json()
    assert "went silent" in detail["resent_why"] and detail["resent_at"]
    run.state, run.heartbeat_at, run.attempts = "running", stale, 3
    db.commit()
    recover()
    db.expire_all()
    run = db.get(TrainingRun, run_id)
    assert run.state == "failed" and "3 times" in run.error
    # a fresh heartbeat is left alone
    run.state, run.heartbeat_at, run.attempts = "running", utcnow(), 1
    db.commit()
    recover()
    db.expire_all()
    assert db.get(TrainingRun, run_id).state == "running"


def test_detail_time_left_and_downloads(client, seeded, auth, db):
    h = auth["researcher"]
    run_id = launch(client, h, dataset_id=seeded["dataset_id"], **{**SMALL, "epochs": 4}).json()[
        "data"
    ][0]["id"]
    run = db.get(TrainingRun, run_id)
    start = utcnow() - timedelta(seconds=20)
    run.state, run.started_at, run.heartbeat_at, run.current_epoch = "running", start, utcnow(), 2
    db.add_all(
        [
            RunEpoch(
                run_id=run_id,
                epoch=1,
                metrics={"train_loss": 1.0},
                created_at=start + timedelta(seconds=5),
            ),
            RunEpoch(
                run_id=run_id,
                epoch=2,
                metrics={"train_loss": 0.5},
                created_at=start + timedelta(seconds=10),
            ),
        ]
    )
    db.commit()
    d = client.get(f"/api/runs/{run_id}", headers=h).json()
    assert [e["epoch"] for e in d["epochs"]] == [1, 2]
    # 5 s per epoch, 2 epochs left, 10 s already spent since the last one -> about 0
    assert 0 <= d["time_left_s"] <= 10
    assert d["downloads"] == {}
    r = client.get(f"/api/runs/{run_id}/files/final.pt", headers=h)
    assert r.status_code == 404 and r.json()["detail"] == "File not found."
    r = client.get(f"/api/runs/{run_id}/files/..%2Fsecret", headers=h)
    assert r.status_code == 404
    assert client.get(f"/api/runs/{run_id}/salience", headers=h).json() == {
        "available": False,
        "kind": None,
        "agreement": None,
        "samples": [],
    }


def test_groups_take_any_number_of_runs_and_a_baseline_written_as_the_browser_writes_it(
    client, seeded, auth, db
):
    """No cap on the runs compared (W&B stops at 10, this page stopped at 50), and the
    baseline value 1.0 named as "1" (as a browser writes it) is the group of 1.0."""
    ids = []
    for lr, clean in ((0.1, 0.6), (1.0, 0.5)):
        for seeds in (list(range(13)), list(range(13, 26))):  # at most 20 seeds a launch
            runs = launch(
                client,
                auth["researcher"],
                dataset_id=seeded["dataset_id"],
                seeds=seeds,
                **{**SMALL, "lr": lr},
            )
            assert runs.status_code == 201, runs.text
            for run in runs.json()["data"]:
                finish(db, run["id"], clean_accuracy=clean + run["config"]["seed"] / 1000)
                ids.append(run["id"])
    assert len(ids) == 52
    params = {"by": "lr", "ids": ",".join(map(str, ids)), "baseline": "1", "margin": 5}
    r = client.get("/api/runs/groups", headers=auth["researcher"], params=params)
    assert r.status_code == 200, r.text
    groups = {g["value"]: g for g in r.json()["groups"]}
    assert sorted(len(g["run_ids"]) for g in groups.values()) == [26, 26]
    paired = groups[0.1]["paired"]["clean_accuracy"]
    assert paired["n"] == 26 and sorted(paired["seeds"]) == list(range(26))
    # every pair differs by exactly 0.1 (10 points): the interval is that point
    assert paired["mean"] == pytest.approx(0.1)
    assert paired["low"] == pytest.approx(0.1) and paired["high"] == pytest.approx(0.1)
    assert groups[1.0]["paired"] == {}
    r = client.get("/api/runs/compare", headers=auth["researcher"], params={"ids": params["ids"]})
    assert r.status_code == 200, r.text
    assert len(r.json()["runs"]) == 52
