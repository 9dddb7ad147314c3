"""Mask-save throughput: 50 annotators saving 512x512 masks at once against the real server.

    python -m backend.benchmarks.mask_save [--clients 50] [--seconds 15] [--workers 2]

Starts the app with uvicorn (a subprocess) on PostgreSQL, logs every client in with a cookie,
and has each one PUT /api/annotate/images/{id}/mask in a loop exactly as the browser does (a
base64 RGBA PNG from a canvas, a fresh save_id each time) for a bounded time. Then it checks
that no save was lost (revisions stored == successful saves, numbered 1..n per annotation) and
prints one JSON line:
    {"bench": "mask_save", "clients": 50, "saves_per_s": ..., "p50_ms": ..., "p99_ms": ...,
     "errors": ...}

WARNING: it WIPES the database it uses: BENCH_DATABASE_URL if set, else TEST_DATABASE_URL
(default postgresql+psycopg://postgres@127.0.0.1:5432/test): the public schema is dropped,
re-created and migrated to head, then seeded with its own annotators and images.
Exit status 1 when a save was lost or failed.

Measured on the development machine (2 shared cores, PostgreSQL 15 local): see the commit
message that last changed this file.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypedDict

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PASSWORD = "bench-annotator-pass"
SIZE = 512


def _database_url() -> str:
    # A development tool like the test suite: it reads the same variables the tests do.
    return os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL", DEFAULT_URL)


def _reset_and_migrate(url: str) -> None:
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.attributes["url"] = url
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, "head")


def _seed(url: str, clients: int) -> list[tuple[str, int]]:
    """One annotator and one 512x512 image per client; returns [(username, image id)]."""
    from sqlalchemy.orm import Session

    from backend.core.security import hash_password
    from backend.db import make_engine
    from backend.models import Dataset, DatasetClass, Image, User

    engine = make_engine(url)
    pw_hash = hash_password(PASSWORD)  # one argon2 hash shared by all: seeding stays fast
    out = []
    with Session(engine) as db:
        dataset = Dataset(name="bench", annotators_per_image=1)
        dataset.classes = [DatasetClass(name="thing", index=0)]
        db.add(dataset)
        db.flush()
        for i in range(clients):
            user = User(username=f"bench{i}", password_hash=pw_hash, role="annotator")
            image = Image(
                dataset_id=dataset.id,
                class_id=dataset.classes[0].id,
                filename=f"thing/{i}.png",
                storage_key=f"bench/{i}.png",
                width=SIZE,
                height=SIZE,
                mode="RGB",
                sha256=f"{i:064d}",
                split="train",
            )
            db.add_all([user, image])
            db.flush()
            out.append((user.username, image.id))
        db.commit()
    engine.dispose()
    return out


def _canvas_pngs(seed: int, n: int = 4) -> list[str]:
    """Base64 RGBA PNGs like a canvas export: opaque strokes on a transparent layer."""
    import numpy as np
    from PIL import Image as PILImage

    rng = random.Random(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    alpha = np.zeros((SIZE, SIZE), bool)
    out = []
    for _ in range(n):
        for _ in range(6):  # a few brush dabs per save
            cx, cy, r = rng.randrange(SIZE), rng.randrange(SIZE), rng.randrange(10, 60)
            alpha |= (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        a = np.where(alpha, 255, 0).astype(np.uint8)
        rgba = np.dstack([np.full_like(a, 255), np.zeros_like(a), np.zeros_like(a), a])
        buf = io.BytesIO()
        PILImage.fromarray(rgba, "RGBA").save(buf, "PNG")
        out.append(base64.b64encode(buf.getvalue()).decode())
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _start_server(url: str, workers: int, storage: str) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    port = _free_port()
    env = dict(
        os.environ,
        DATABASE_URL=url,
        ENVIRONMENT="test",
        STORAGE_DIR=storage,
        SECRET_KEY="bench-secret-key-not-for-production",
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "backend.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=ROOT,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the server exited while starting")
        try:
            if httpx.get(base + "/api/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the server did not start")


async def _client(
    base: str,
    username: str,
    image_id: int,
    pngs: list[str],
    start: asyncio.Event,
    stop_at: list[float],
    latencies: list[float],
    errors: list[str],
    ready: list[str],
) -> int:
    import httpx

    ok = 0
    limits = httpx.Limits(max_connections=1)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http:
        r = await http.post("/api/auth/login", json={"username": username, "password": PASSWORD})
        if r.status_code != 200:
            errors.append(f"login {r.status_code}")
            ready.append(username)
            return 0
        ready.append(username)  # logged in: the session cookie alone, as in the browser
        await start.wait()
        n = 0
        active_ms = 0
        while time.monotonic() < stop_at[0]:
            active_ms += 700
            body = {
                "save_id": uuid.uuid4().hex,
                "mask_png_base64": pngs[n % len(pngs)],
                "width": SIZE,
                "height": SIZE,
                "active_ms": active_ms,
            }
            n += 1
            t0 = time.perf_counter()
            try:
                r = await http.put(f"/api/annotate/images/{image_id}/mask", json=body)
            except httpx.HTTPError as exc:
                errors.append(type(exc).__name__)
                continue
            latencies.append((time.perf_counter() - t0) * 1000)
            if r.status_code == 200 and r.json().get("revision") == ok + 1:
                ok += 1
            else:
                errors.append(f"{r.status_code} {r.text[:120]}")
    return ok


class _ClientsResult(TypedDict):
    per_client: list[int]  # successful saves of each client
    latencies: list[float]  # ms per save
    errors: list[str]
    elapsed: float  # s
    server_cpu: float  # s
    client_cpu: float  # s


async def _run_clients(
    base: str, accounts: list[tuple[str, int]], seconds: float, server_cpu: Callable[[], float]
) -> _ClientsResult:
    pngs = [_canvas_pngs(i) for i in range(len(accounts))]
    start = asyncio.Event()
    stop_at = [float("inf")]
    latencies: list[float] = []
    errors: list[str] = []
    ready: list[str] = []
    tasks = [
        asyncio.create_task(
            _client(base, u, img, pngs[i], start, stop_at, latencies, errors, ready)
        )
        for i, (u, img) in enumerate(accounts)
    ]
    # every client logs in (argon2: slow on purpose) before the clock starts
    while len(ready) < len(tasks) and not all(t.done() for t in tasks):
        await asyncio.sleep(0.1)
    cpu0, client0 = server_cpu(), time.process_time()
    t0 = time.monotonic()
    stop_at[0] = t0 + seconds
    start.set()
    per_client = await asyncio.gather(*tasks)
    elapsed = time.monotonic() - t0
    return {
        "per_client": per_client,
        "latencies": latencies,
        "errors": errors,
        "elapsed": elapsed,
        "server_cpu": server_cpu() - cpu0,
        "client_cpu": time.process_time() - client0,
    }


def _stored_revisions(url: str) -> dict[int, tuple[int, int]]:
    """{image id: (revision rows, latest revision)} of the seeded annotations."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT a.image_id, count(r.id), max(a.latest_revision) FROM annotations a "
                "LEFT JOIN annotation_revisions r ON r.annotation_id = a.id GROUP BY a.image_id"
            )
        ).all()
    engine.dispose()
    return {image_id: (n, latest) for image_id, n, latest in rows}


def _cpu_seconds(root_pid: int) -> float:
    """User + system CPU time of a process and its children (the uvicorn workers), Linux."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry.name), int(fields[1])
        if pid == root_pid or ppid == root_pid:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    url = _database_url()
    _reset_and_migrate(url)
    accounts = _seed(url, args.clients)
    storage = tempfile.mkdtemp(prefix="sipat-bench-")
    proc, base = _start_server(url, args.workers, storage)
    try:
        result = asyncio.run(
            _run_clients(base, accounts, args.seconds, lambda: _cpu_seconds(proc.pid))
        )
        server_cpu = result["server_cpu"]
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    ok = sum(result["per_client"])
    stored = _stored_revisions(url)
    lost = []
    for (_, image_id), n_ok in zip(accounts, result["per_client"], strict=True):
        rows, latest = stored.get(image_id, (0, 0))
        if rows != n_ok or (latest or 0) != n_ok:
            lost.append((image_id, n_ok, rows, latest))
    errors = len(result["errors"]) + len(lost)
    line = {
        "bench": "mask_save",
        "clients": args.clients,
        "saves_per_s": round(ok / result["elapsed"], 1),
        "p50_ms": round(_percentile(result["latencies"], 0.50), 1),
        "p99_ms": round(_percentile(result["latencies"], 0.99), 1),
        "errors": errors,
    }
    sys.stdout.write(json.dumps(line) + "\n")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    sys.stderr.write(
        f"server CPU {1000 * server_cpu / max(ok, 1):.1f} ms per save, clients "
        f"{1000 * result['client_cpu'] / max(ok, 1):.1f} ms "
        f"({args.workers} workers, {os.cpu_count()} cores, load average {load:.1f})\n"
    )
    if result["errors"]:
        sys.stderr.write(f"first errors: {result['errors'][:5]}\n")
    if lost:
        sys.stderr.write(f"saves lost (image, acknowledged, stored, latest): {lost[:5]}\n")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
