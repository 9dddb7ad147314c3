"""The web side at lab scale, on PostgreSQL: 200,000 images, 50 annotators with 100,000
annotations, 3,000 runs.

    python -m backend.benchmarks.scale [--images 200000] [--annotations 100000] [--runs 3000]

Seeds a database of its own (created on the server of BENCH_DATABASE_URL or
TEST_DATABASE_URL, dropped at the end) with bulk inserts, serves the real app with uvicorn on
it, and measures through HTTP:
- next_image_p99_ms: 50 annotators asking for their next image at once, each then skipping
  it (so that the next ask is a new pick), 20 rounds: the 99th percentile of every ask;
- runs_page_p99_ms: the runs table's first page (50 runs, newest first), asked 50 times;
- compare_20_runs_ms: the comparison of 20 runs, median of 10;
- consensus_freeze_s: freezing the mask set of the dataset that holds the 100,000 accepted
  masks (one per image).
- next_alone_ms: one annotator asking alone (then skipping), the median of 20 asks;
- next_over_floor: the next image's p99 in the burst of 50 over the p99 of `/api/auth/me`
  (one login check, the least a request costs) in a burst of 50 on the same server: how far
  above the floor the queue's work puts an ask when everyone asks at once.
Prints one JSON line: {"bench": "scale", ..., "goals_met": {...}}; exit status 1 when a goal
is missed. Goals (issue 27): next_alone_ms <= 5, next_over_floor <= 2, runs page p99 <= 300
ms, freeze <= 60 s. (The earlier goal of a next-image p99 under 50 ms in the burst of 50 on
2 cores was below the floor request's own p99 on such a machine, and was replaced.)
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PASSWORD = "scale-bench-password"
SIZE = 32  # image and mask side: the masks are real, their pixels are not what is measured
GOALS = {
    "next_alone_ms": 5.0,
    "next_over_floor": 2.0,
    "runs_page_p99_ms": 300.0,
    "consensus_freeze_s": 60.0,
}


def _server_url() -> str:
    return os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL", DEFAULT_URL)


def _create_database() -> tuple[str, str]:
    import sqlalchemy as sa

    server = _server_url()
    name = f"sipat_scale_{os.getpid()}"
    engine = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    url = sa.engine.make_url(server).set(database=name).render_as_string(hide_password=False)
    from alembic import command
    from alembic.config import Config

    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.attributes["url"] = url
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, "head")
    return url, name


def _drop_database(name: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(_server_url(), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def _mask_png(i: int) -> tuple[bytes, int, str]:
    import numpy as np
    from PIL import Image as PILImage

    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    r = 4 + i % 10
    mask = (xx - SIZE // 2) ** 2 + (yy - SIZE // 2) ** 2 <= r * r
    buf = io.BytesIO()
    PILImage.fromarray(np.where(mask, 255, 0).astype(np.uint8), "L").save(buf, "PNG")
    return (
        buf.getvalue(),
        int(mask.sum()),
        hashlib.sha256(mask.astype("uint8").tobytes()).hexdigest(),
    )


def seed(url: str, images: int, annotations: int, runs: int, annotators: int) -> dict[str, Any]:
    """Bulk inserts; returns the ids the measurements need."""
    import sqlalchemy as sa

    from backend.core.security import hash_password
    from backend.models import (
        Annotation,
        AnnotationRevision,
        Dataset,
        DatasetClass,
        Image,
        RunEpoch,
        TrainingRun,
        User,
        random_queue_position,
    )

    engine = sa.create_engine(url)
    now = datetime.now(UTC)
    pw = hash_password(PASSWORD)
    with engine.begin() as conn:
        conn.execute(sa.insert(User), [{"username": "researcher", "password_hash": pw,
                                        "role": "researcher", "is_active": True}])  # fmt: skip
        conn.execute(
            sa.insert(User),
            [{"username": f"annotator{i}", "password_hash": pw, "role": "annotator",
              "is_active": True} for i in range(annotators)],
        )  # fmt: skip
        users = dict(conn.execute(sa.select(User.username, User.id)).all())
        # the annotated dataset (one accepted mask per image) and the one still in the queue
        dataset_ids = []
        for name, per_image in (("annotated", 1), ("queue", 3)):
            ds = conn.execute(
                sa.insert(Dataset).returning(Dataset.id),
                [{"name": name, "description": "", "instructions": "", "content_hash": "",
                  "annotators_per_image": per_image, "created_at": now}],
            ).scalar_one()  # fmt: skip
            conn.execute(
                sa.insert(DatasetClass),
                [{"dataset_id": ds, "name": f"c{k}", "index": k} for k in range(10)],
            )
            dataset_ids.append(ds)
        classes = {
            (d, k): cid
            for d, k, cid in conn.execute(
                sa.select(DatasetClass.dataset_id, DatasetClass.index, DatasetClass.id)
            )
        }
    annotated, queue = dataset_ids
    chunk = 20_000
    split_of = ("train", "train", "train", "train", "test")
    with engine.begin() as conn:
        for start in range(0, images, chunk):
            rows = []
            for i in range(start, min(images, start + chunk)):
                ds = annotated if i < annotations else queue
                rows.append(
                    {"dataset_id": ds, "class_id": classes[(ds, i % 10)],
                     "filename": f"c{i % 10}/{i}.png", "storage_key": f"scale/{i}.png",
                     "width": SIZE, "height": SIZE, "mode": "L", "sha256": f"{i:064x}",
                     "split": split_of[i % 5], "queue_position": random_queue_position(),
                     "queue_held": 1 if ds == annotated else 0}
                )  # fmt: skip
            # with RETURNING the rows go in as multi-row statements (a plain executemany
            # is one statement per row, and the queue's counting trigger would run per row)
            conn.execute(sa.insert(Image).returning(Image.id), rows)
    masks = [_mask_png(i) for i in range(10)]
    annotator_ids = [users[f"annotator{i}"] for i in range(annotators)]
    with engine.begin() as conn:
        image_ids = list(
            conn.scalars(
                sa.select(Image.id).where(Image.dataset_id == annotated).order_by(Image.id)
            )
        )
        for start in range(0, len(image_ids), chunk):
            part = image_ids[start : start + chunk]
            ann_ids = conn.scalars(
                sa.insert(Annotation).returning(Annotation.id, sort_by_parameter_order=True),
                [{"image_id": im, "annotator_id": annotator_ids[(start + j) % annotators],
                  "status": "accepted", "latest_revision": 1, "active_ms": 30_000,
                  "review_comment": "", "submitted_at": now, "created_at": now,
                  "updated_at": now} for j, im in enumerate(part)],
            ).all()  # fmt: skip
            conn.execute(
                sa.insert(AnnotationRevision),
                [{"annotation_id": a, "revision": 1, "save_id": f"s{a}", "mask_format": "png",
                  "mask_bytes": masks[a % 10][0], "width": SIZE, "height": SIZE,
                  "area": masks[a % 10][1], "sha256": masks[a % 10][2], "active_ms": 30_000,
                  "source": "browser", "created_at": now} for a in ann_ids],
            )  # fmt: skip
    config = {"model": "small_cnn", "epochs": 10, "eps": 8 / 255, "alpha": 2 / 255, "seed": 0}
    final = {"final": {"clean_accuracy": 0.9, "robust": {"0.031373": 0.45}}, "method": {}}
    with engine.begin() as conn:
        run_ids = conn.scalars(
            sa.insert(TrainingRun).returning(TrainingRun.id, sort_by_parameter_order=True),
            [{"name": f"run {i}", "group_key": f"g{i // 3}", "tags": ["scale"],
              "dataset_id": annotated, "method": ("pgd_at", "sip_at", "standard")[i % 3],
              "config": {**config, "seed": i % 3}, "state": "succeeded", "progress": 1.0,
              "current_epoch": 10, "total_epochs": 10, "final_metrics": final,
              "reproducibility": {}, "log_tail": "", "cancel_requested": False,
              "attempts": 1, "created_at": now - timedelta(minutes=runs - i)}
             for i in range(runs)],
        ).all()  # fmt: skip
        conn.execute(
            sa.insert(RunEpoch),
            [{"run_id": r, "epoch": e, "created_at": now,
              "metrics": {"epoch": e, "train_loss": 1.0 / e, "clean_accuracy": 0.5 + e / 40}}
             for r in run_ids for e in range(1, 11)],
        )  # fmt: skip
    engine.dispose()
    return {"annotated": annotated, "queue": queue, "run_ids": run_ids}


class _Server:
    def __init__(self, url: str, workers: int) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        env = dict(
            os.environ,
            DATABASE_URL=url,
            ENVIRONMENT="test",
            SECRET_KEY="scale-bench-secret-key-0123456789",
            STORAGE_DIR=str(Path(os.environ.get("TMPDIR", "/tmp")) / f"scale-{os.getpid()}"),
            LOGIN_MAX_FAILURES_PER_ADDRESS="100000",
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "backend.main:app", "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", str(workers), "--log-level", "warning"],
            cwd=ROOT, env=env,
        )  # fmt: skip
        self.base = f"http://127.0.0.1:{self.port}"
        import httpx

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.base + "/api/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("the server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


def _client(base: str, username: str) -> Any:
    import httpx

    c = httpx.Client(base_url=base, timeout=120)
    r = c.post("/api/auth/login", json={"username": username, "password": PASSWORD})
    r.raise_for_status()
    c.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
    c.cookies.clear()
    return c


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def _drive(
    clients: list[Any], rounds: int, wait: Any, ask: Any, after: Any = None
) -> tuple[list[float], list[str]]:
    """Each client, in a thread of its own, `rounds` times: wait(client index), then
    ask(client) timed, then after(client, response) untimed. Returns the latencies in ms and
    the failed answers."""
    times: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def one(i: int, c: Any) -> None:
        for _ in range(rounds):
            wait(i)
            t0 = time.perf_counter()
            r = ask(c)
            took = (time.perf_counter() - t0) * 1000
            with lock:
                times.append(took)
                if r.status_code != 200:
                    errors.append(f"{r.status_code} {r.text[:100]}")
            if after is not None and r.status_code == 200:
                after(c, r)

    threads = [threading.Thread(target=one, args=(i, c)) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return times, errors


def _bursts(
    clients: list[Any], rounds: int, ask: Any, after: Any = None
) -> tuple[list[float], list[str]]:
    """Every client asks at the same moment (a barrier), `rounds` times."""
    barrier = threading.Barrier(len(clients), timeout=120)
    return _drive(clients, rounds, lambda _i: barrier.wait(), ask, after)


# The paced load: the annotators ask independently (Poisson arrivals), together this many
# asks per second, PACED_ROUNDS asks each: 50 annotators each asking every 10 s on average
# (people drawing masks take 10-60 s per mask)
PACED_ASKS_PER_S = 5.0
PACED_ROUNDS = 5


def _paced(clients: list[Any], rounds: int, ask: Any, after: Any) -> tuple[list[float], list[str]]:
    """Each client asks `rounds` times at random moments (exponential gaps with a mean of
    len(clients) / PACED_ASKS_PER_S seconds)."""
    import random

    mean_gap = len(clients) / PACED_ASKS_PER_S
    rngs = [random.Random(i) for i in range(len(clients))]
    return _drive(
        clients, rounds, lambda i: time.sleep(rngs[i].expovariate(1 / mean_gap)), ask, after
    )


def measure_next_image(base: str, queue: int, annotators: int, rounds: int) -> dict[str, Any]:
    """The annotators ask for their next image at the same moment, and each skips it (so
    the next round asks again). Beside it: the same burst on /api/auth/me (one session
    lookup), the least any request costs on this machine with the client on the same cores;
    one annotator asking alone (a request without a queue in front of it); and the
    annotators asking at random moments, PACED_ASKS_PER_S together."""
    clients = [_client(base, f"annotator{i}") for i in range(annotators)]

    def ask(c: Any) -> Any:
        return c.get("/api/annotate/next", params={"dataset_id": queue})

    def skip(c: Any, r: Any) -> None:
        c.post(f"/api/annotate/images/{r.json()['image']['id']}/skip", json={"reason": "unclear"})

    floor, _ = _bursts(clients, rounds, lambda c: c.get("/api/auth/me"))
    times, errors = _bursts(clients, rounds, ask, skip)
    alone, _ = _bursts(clients[:1], rounds, ask, skip)
    paced, paced_errors = _paced(clients, PACED_ROUNDS, ask, skip)
    return {
        "next_image_p99_ms": round(_p99(times), 1),
        "next_image_p50_ms": round(statistics.median(times), 1),
        "next_image_requests": len(times),
        "next_image_errors": len(errors),
        "floor_me_p99_ms": round(_p99(floor), 1),
        "floor_me_p50_ms": round(statistics.median(floor), 1),
        "one_annotator_next_p50_ms": round(statistics.median(alone), 1),
        "next_alone_ms": round(statistics.median(alone), 1),
        "next_over_floor": round(_p99(times) / max(_p99(floor), 1e-9), 2),
        "paced_next_image_p99_ms": round(_p99(paced), 1),
        "paced_next_image_p50_ms": round(statistics.median(paced), 1),
        "paced_asks_per_s": PACED_ASKS_PER_S,
        "paced_errors": len(paced_errors),
    }


def measure_researcher(base: str, ids: dict[str, Any]) -> dict[str, Any]:
    c = _client(base, "researcher")
    page = []
    for _ in range(50):
        t0 = time.perf_counter()
        c.get("/api/runs", params={"limit": 50}).raise_for_status()
        page.append((time.perf_counter() - t0) * 1000)
    twenty = ",".join(map(str, ids["run_ids"][-20:]))
    compare = []
    for _ in range(10):
        t0 = time.perf_counter()
        c.get("/api/runs/compare", params={"ids": twenty}).raise_for_status()
        compare.append((time.perf_counter() - t0) * 1000)
    t0 = time.perf_counter()
    r = c.post(
        f"/api/datasets/{ids['annotated']}/mask-sets",
        json={"name": "scale freeze", "statuses": ["accepted"]},
    )
    freeze_s = time.perf_counter() - t0
    r.raise_for_status()
    return {
        "runs_page_p99_ms": round(_p99(page), 1),
        "compare_20_runs_ms": round(statistics.median(compare), 1),
        "consensus_freeze_s": round(freeze_s, 2),
        "frozen_images": r.json()["num_images"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=200_000)
    parser.add_argument("--annotations", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    args = parser.parse_args(argv)
    url, name = _create_database()
    try:
        t0 = time.perf_counter()
        ids = seed(url, args.images, args.annotations, args.runs, args.annotators)
        seeded_s = time.perf_counter() - t0
        print(f"seeded in {seeded_s:.0f} s", file=sys.stderr)
        server = _Server(url, args.workers)
        try:
            result: dict[str, Any] = {
                "bench": "scale",
                "images": args.images,
                "annotations": args.annotations,
                "runs": args.runs,
                "annotators": args.annotators,
                "database": "postgresql",
                "server_workers": args.workers,
                **measure_next_image(server.base, ids["queue"], args.annotators, args.rounds),
                **measure_researcher(server.base, ids),
                "seed_s": round(seeded_s, 1),
            }
        finally:
            server.stop()
    finally:
        _drop_database(name)
    met = {k: result[k] <= goal for k, goal in GOALS.items()}
    result["goals"] = GOALS
    result["goals_met"] = met
    print(json.dumps(result))
    return 0 if all(met.values()) and result["next_image_errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
