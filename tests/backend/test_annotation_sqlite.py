"""Concurrent saves on the embedded SQLite default lose nothing (no "database is locked"):
the real server in two worker processes, 20 annotators x 5 saves at once."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
import time
import uuid

import numpy as np
import sqlalchemy as sa

from tests.backend.test_annotation import mask_png
from tests.conftest import ROOT, free_port, run_migrations

CLIENTS, SAVES, SIZE = 20, 5, 128


def _seed(url: str) -> list[tuple[str, int]]:
    from sqlalchemy.orm import Session

    from backend.core.security import hash_password
    from backend.db import make_engine
    from backend.models import Dataset, DatasetClass, Image, User

    engine = make_engine(url)
    pw = hash_password("pw")
    out = []
    with Session(engine) as db:
        ds = Dataset(name="lite", annotators_per_image=CLIENTS)
        ds.classes = [DatasetClass(name="c", index=0)]
        db.add(ds)
        db.flush()
        # two images shared by everyone: saves of many annotations touch the same rows' tables
        images = [
            Image(
                dataset_id=ds.id,
                class_id=ds.classes[0].id,
                filename=f"c/{i}.png",
                storage_key=f"x/{i}.png",
                width=SIZE,
                height=SIZE,
                mode="L",
                sha256="0" * 64,
            )
            for i in range(2)
        ]
        db.add_all(images)
        for i in range(CLIENTS):
            db.add(User(username=f"lite{i}", password_hash=pw, role="annotator"))
        db.flush()
        out = [(f"lite{i}", images[i % 2].id) for i in range(CLIENTS)]
        db.commit()
    engine.dispose()
    return out


def test_concurrent_saves_on_sqlite_lose_nothing(tmp_path):
    import httpx

    url = f"sqlite:///{tmp_path / 'app.db'}"
    run_migrations(url)
    accounts = _seed(url)
    port = free_port()
    env = dict(os.environ, DATABASE_URL=url, STORAGE_DIR=str(tmp_path / "storage"))
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
            "2",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/api/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        rng = np.random.default_rng(0)
        payload = base64.b64encode(mask_png(rng.random((SIZE, SIZE)) < 0.3)).decode()
        barrier = threading.Barrier(CLIENTS)
        results: dict[str, list[int]] = {}

        def annotator(username: str, image_id: int) -> None:
            with httpx.Client(base_url=base, timeout=120) as c:
                assert (
                    c.post(
                        "/api/auth/login", json={"username": username, "password": "pw"}
                    ).status_code
                    == 200
                )
                barrier.wait()
                got = []
                for _ in range(SAVES):
                    r = c.put(
                        f"/api/annotate/images/{image_id}/mask",
                        json={
                            "save_id": uuid.uuid4().hex,
                            "mask_png_base64": payload,
                            "width": SIZE,
                            "height": SIZE,
                            "active_ms": 10,
                        },
                    )
                    got.append(r.status_code if r.status_code != 200 else r.json()["revision"])
                results[username] = got

        threads = [threading.Thread(target=annotator, args=a) for a in accounts]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        proc.terminate()
        proc.wait(15)
    assert len(results) == CLIENTS
    assert all(v == [1, 2, 3, 4, 5] for v in results.values()), results
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from annotation_revisions")).scalar() == (
            CLIENTS * SAVES
        )
    engine.dispose()
