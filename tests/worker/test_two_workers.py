"""Workers on two hosts that share nothing but PostgreSQL, Redis and a real S3 server
(SeaweedFS): the API stores the dataset in the object store, two Celery workers with caches
of their own (no shared folder; their STORAGE_DIR does not exist) each take one of two
queued runs, train them at the same time, and both succeed; their results are served by the
API from the store."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import httpx
import pytest

import tests.worker.test_training_tasks as tt
from tests import s3_server
from tests.conftest import ROOT, S3_BUCKET, free_port, seed_live_world

pytestmark = pytest.mark.slow

QUEUE = f"training-two-{uuid.uuid4().hex[:8]}"


def _env(s3_endpoint: str, prefix: str, **extra: str) -> dict[str, str]:
    return dict(
        os.environ,
        STORAGE_URL=f"s3://{S3_BUCKET}/{prefix}",
        S3_ENDPOINT_URL=s3_endpoint,
        S3_ACCESS_KEY_ID=s3_server.ACCESS_KEY,
        S3_SECRET_ACCESS_KEY=s3_server.SECRET_KEY,
        TRAINING_QUEUE=QUEUE,
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        **extra,
    )


@pytest.fixture()
def hosts(pg_database, s3_endpoint, tmp_path):
    """The API "host" and two worker "hosts", each with folders of its own."""
    prefix = f"two-{uuid.uuid4().hex[:8]}"
    api_dir = tmp_path / "api-host"
    port = free_port()
    api = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "backend.main:app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"],
        cwd=ROOT, env=_env(s3_endpoint, prefix, STORAGE_DIR=str(api_dir / "unused")),
    )  # fmt: skip
    workers = []
    for name in ("gpu-host-a", "gpu-host-b"):
        folder = tmp_path / name
        folder.mkdir()
        log = open(folder / "worker.log", "wb")  # noqa: SIM115
        env = _env(
            s3_endpoint,
            prefix,
            STORAGE_DIR=str(folder / "no-such-folder"),
            WORKER_CACHE_DIR=str(folder / "cache"),
        )
        workers.append(
            (
                name,
                folder,
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "celery",
                        "-A",
                        "worker.celery_app",
                        "worker",
                        "-Q",
                        QUEUE,
                        "-c",
                        "1",
                        "--pool=solo",
                        "-n",
                        f"{name}@test",
                        "--without-gossip",
                        "--without-mingle",
                        "-l",
                        "info",
                    ],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                ),  # fmt: skip
            )
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/api/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the API did not start"
        time.sleep(0.2)
    yield base, workers, api_dir
    for _, _, proc in workers:
        proc.terminate()
    api.terminate()
    for _, _, proc in workers:
        proc.wait(30)
    api.wait(30)


def test_two_queued_runs_run_at_once_on_two_workers_sharing_no_folder(hosts):
    base, workers, api_dir = hosts
    world = seed_live_world(base, "two-hosts", size=12)
    headers = world["headers"]["researcher"]
    body = {"dataset_id": world["dataset"]["id"], **tt.TINY, "epochs": 4, "seeds": [0, 1]}
    r = httpx.post(f"{base}/api/runs", headers=headers, json=body, timeout=60)
    assert r.status_code == 201, r.text
    ids = [run["id"] for run in r.json()["data"]]
    both_running = False
    deadline = time.monotonic() + 400
    while True:
        runs = [httpx.get(f"{base}/api/runs/{i}", headers=headers).json() for i in ids]
        states = [run["state"] for run in runs]
        assert "failed" not in states, [run.get("error") for run in runs]
        if states == ["running", "running"]:
            both_running = True
        if states == ["succeeded", "succeeded"]:
            break
        logs = "\n".join(
            (f / "worker.log").read_text(errors="replace")[-1500:] for _, f, _ in workers
        )
        assert time.monotonic() < deadline, f"runs {states}\n{logs}"
        time.sleep(0.2)
    assert both_running, "the two runs never trained at the same time"
    hosts_used = {run["worker_hostname"] for run in runs}
    assert hosts_used == {"gpu-host-a@test", "gpu-host-b@test"}, hosts_used
    # no folder was shared: the API host wrote nothing locally, each worker has its own cache
    assert not [p for p in api_dir.rglob("*") if p.is_file()]
    for _, folder, _ in workers:
        assert not (folder / "no-such-folder").exists()
        assert list((folder / "cache").rglob("*.pt")), f"{folder.name} trained nothing"
    # the results are in the store, and the API serves them from there
    for run_id in ids:
        r = httpx.get(f"{base}/api/runs/{run_id}/files/final.pt", headers=headers)
        assert r.status_code == 200 and len(r.content) > 1000
        r = httpx.get(f"{base}/api/runs/{run_id}/files/metrics.json", headers=headers)
        assert r.status_code == 200 and r.json()["final"]["n_test"] > 0
