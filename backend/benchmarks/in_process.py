"""What the in-process benchmarks share (sweep_page, study_results): a database of their own on
the PostgreSQL server named by BENCH_DATABASE_URL or TEST_DATABASE_URL (created, migrated,
dropped at the end), the app on it through FastAPI's TestClient with the login overridden (a
route's own work is what is measured), and the percentile they report.

    with app_on_own_database("sipat_bench_sweep") as bench:
        thing_id = seed(bench.url)  # rows written straight to bench.url
        r = bench.client.get(...)   # as a researcher
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def server_url() -> str:
    return os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL", DEFAULT_URL)


def _admin(url: str, statement: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(statement))
    engine.dispose()


def percentile(values: list[float], q: float) -> float:
    """The q-quantile of the values, by the nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class InProcessApp:
    url: str  # the benchmark's own database
    client: Any  # fastapi.testclient.TestClient on the app, logged in as a researcher


@contextmanager
def app_on_own_database(prefix: str) -> Iterator[InProcessApp]:
    """A fresh database named `prefix`_<pid>, migrated to head, and the app on it."""
    import sqlalchemy as sa

    server = server_url()
    name = f"{prefix}_{os.getpid()}"
    _admin(server, f'DROP DATABASE IF EXISTS "{name}"')
    _admin(server, f'CREATE DATABASE "{name}"')
    url = sa.engine.make_url(server).set(database=name).render_as_string(hide_password=False)
    os.environ.update(
        {
            "ENVIRONMENT": "test",
            "SECRET_KEY": "bench-secret-key-not-for-production",
            "DATABASE_URL": url,
            "STORAGE_DIR": tempfile.mkdtemp(prefix="sipat-bench-"),
        }
    )
    try:
        from alembic import command
        from alembic.config import Config
        from fastapi.testclient import TestClient

        from backend.core.config import ROOT
        from backend.deps import get_current_user
        from backend.main import app
        from backend.models import User

        cfg = Config(str(ROOT / "alembic.ini"))
        cfg.set_main_option("sqlalchemy.url", url)
        command.upgrade(cfg, "head")
        researcher = User(id=1, username="bench", role="researcher")
        app.dependency_overrides[get_current_user] = lambda: researcher
        yield InProcessApp(url, TestClient(app))
    finally:
        from backend.db import get_engine

        get_engine().dispose()
        _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
