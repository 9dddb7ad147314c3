"""The demo's content build through a real server: a run that ends badly is said once and
the build goes on without it, and nothing that needs it is half-made."""

from __future__ import annotations

import logging

from backend.db import get_sessionmaker
from backend.demo_content import SWEEP, DemoApi, demo_study, wait_for_runs
from tests.backend.study_support import make_dataset, make_run
from tests.conftest import PASSWORDS, seed_live_world


def test_a_cancelled_demo_run_is_said_and_the_demo_goes_on(live_server, tiny_checkpoint, caplog):
    seed_live_world(live_server, "demo-content")
    with get_sessionmaker()() as db:
        dataset_id, _ = make_dataset(db, n=4, name="digits")
        done = make_run(db, dataset_id, tiny_checkpoint, name=f"{SWEEP} · baseline (seed 0)")
        gone = make_run(
            db,
            dataset_id,
            tiny_checkpoint,
            name=f"{SWEEP} · mask_fraction=1 (seed 0)",
            state="cancelled",
        )
    api = DemoApi(live_server, "researcher", PASSWORDS["researcher"])
    shown: list[tuple[float, str]] = []
    with caplog.at_level(logging.WARNING, logger="demo"):
        ended = wait_for_runs(api, [{"id": done}, {"id": gone}], lambda f, s: shown.append((f, s)))
        study = demo_study(api, ended)
    assert {r["id"]: r["state"] for r in ended} == {done: "succeeded", gone: "cancelled"}
    assert shown[-1][1] == "1 of 2 runs finished"
    said = [r.getMessage() for r in caplog.records if "goes on without it" in r.getMessage()]
    assert len(said) == 1 and "cancelled" in said[0] and "mask_fraction=1" in said[0]
    # the study needs both seed-0 runs: not made, and said so, rather than half-made
    assert study is None
    assert any("is not made" in r.getMessage() for r in caplog.records)
    assert api.get("/api/studies")["count"] == 0
