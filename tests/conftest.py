"""Shared fixtures. Integration tests use the real PostgreSQL and Redis named by
TEST_DATABASE_URL and TEST_REDIS_URL (defaults: the local servers); they fail, never skip,
when those are unreachable."""

from __future__ import annotations

import functools
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# Several test processes side by side (make test): one CPU thread each for torch and the
# workers and servers they start (OpenMP threads that outnumber the cores spin and stall)
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ.setdefault("OMP_NUM_THREADS", "1")

# Fixtures every test module may use without importing them (one instance per run: a fixture
# imported into several modules would be built once per module)
pytest_plugins = ["tests.backend.study_support"]

ROOT = Path(__file__).resolve().parents[1]
TEST_DATABASE_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
_STORAGE = Path(tempfile.mkdtemp(prefix="sipat-test-storage-"))


# One folder per test run, named by the first process (the xdist controller, whose environment
# its workers inherit) and removed by it at the end
_OWNS_SHARED = "SIPAT_TEST_SHARED" not in os.environ
if _OWNS_SHARED:
    os.environ["SIPAT_TEST_SHARED"] = tempfile.mkdtemp(prefix="sipat-test-shared-")
_SHARED = Path(os.environ["SIPAT_TEST_SHARED"])


def shared_across_processes(name: str, build: Callable[[Path], None]) -> Path:
    """A folder that `build` fills once per test run, however many processes the run has
    (pytest-xdist's workers share it; a lock makes the others wait for the first). For
    expensive artefacts that no test changes: a trained tiny model, say."""
    import fcntl

    folder = _SHARED / name
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / ".complete").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            (folder / ".complete").touch()
    return folder


def _private_database(url: str) -> tuple[str, str | None]:
    """A database of this test run's own on the same server, so that two runs (two
    developers, or CI beside a developer) never empty each other's tables. Falls back to the
    given database when the account may not create databases."""
    import sqlalchemy as sa

    name = f"sipat_test_{os.getpid()}"
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception:  # noqa: BLE001 - no CREATEDB right: use the database as given
        return url, None
    finally:
        engine.dispose()
    return sa.engine.make_url(url).set(database=name).render_as_string(hide_password=False), name


TEST_SERVER_URL = TEST_DATABASE_URL
TEST_DATABASE_URL, _PRIVATE_DB = _private_database(TEST_SERVER_URL)

# Settings are read once per process: point them at the test services before the app loads.
os.environ.update(
    {
        "ENVIRONMENT": "test",
        "SECRET_KEY": "test-secret-key-not-for-production",
        "DATABASE_URL": TEST_DATABASE_URL,
        "CELERY_BROKER_URL": TEST_REDIS_URL,
        "CELERY_RESULT_BACKEND": TEST_REDIS_URL,
        "STORAGE_DIR": str(_STORAGE),
        # a queue of this run's own, so that concurrent test runs never take each other's tasks
        "TRAINING_QUEUE": f"training-test-{os.getpid()}",
    }
)


# TEST_STORAGE=s3: every stored file goes to a real S3 server (SeaweedFS) this run starts;
# the API side has no storage folder at all, and the workers' cache is a folder of its own,
# so that nothing can pass by sharing disk. `make test` runs the storage suites this way too.
S3_BUCKET = "sipat-test"
_S3 = None
if os.environ.get("TEST_STORAGE") == "s3":
    from tests import s3_server

    _S3 = s3_server.start(S3_BUCKET)
    os.environ.update(
        {
            "STORAGE_URL": f"s3://{S3_BUCKET}/run-{os.getpid()}",
            "S3_ENDPOINT_URL": _S3.endpoint,
            "S3_ACCESS_KEY_ID": s3_server.ACCESS_KEY,
            "S3_SECRET_ACCESS_KEY": s3_server.SECRET_KEY,
            "STORAGE_DIR": str(_STORAGE / "api-side-unused"),
            "WORKER_CACHE_DIR": tempfile.mkdtemp(prefix="sipat-test-worker-cache-"),
        }
    )


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    """A real S3 server's endpoint, with the bucket S3_BUCKET (the run's own, or one started
    for this session)."""
    global _S3
    if _S3 is None:
        from tests import s3_server

        _S3 = s3_server.start(S3_BUCKET)
    return _S3.endpoint


def pytest_unconfigure(config):
    if _OWNS_SHARED:
        shutil.rmtree(_SHARED, ignore_errors=True)
    if _S3 is not None:
        _S3.stop()
    if _PRIVATE_DB is None:
        return
    import sqlalchemy as sa

    from backend.db import get_engine

    get_engine().dispose()
    engine = sa.create_engine(TEST_SERVER_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{_PRIVATE_DB}" WITH (FORCE)'))
    finally:
        engine.dispose()
    shutil.rmtree(_STORAGE, ignore_errors=True)


# The files that take longest (measured with --durations on 2 cores), longest first. `make
# test` spreads whole files over processes (pytest-xdist --dist loadfile) in collection order,
# so these start first and the short files fill in around them; a file missing here only
# starts later. Order only: nothing depends on it.
LONGEST_FIRST = (
    "tests/browser/test_demo_pages.py",
    "tests/backend/test_api_fuzz.py",
    "tests/sipat/test_robustness.py",
    "tests/worker/test_runs_on_ranks.py",
    "tests/sipat/test_train.py",
    "tests/browser/test_runs_browser.py",
    "tests/browser/test_sweep_browser.py",
    "tests/browser/test_study_display.py",
    "tests/browser/test_study_browser.py",
    "tests/sipat/test_compare.py",
    "tests/sipat/test_distributed.py",
    "tests/worker/test_training_tasks.py",
    "tests/backend/test_sqlite_concurrency.py",
    "tests/sipat/test_cli.py",
    "tests/browser/test_live_curves.py",
    "tests/worker/test_two_workers.py",
    "tests/worker/test_recovery.py",
    "tests/backend/test_role_matrix.py",
    "tests/sipat/test_precision.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}

    def key(item) -> int:
        path = Path(str(item.fspath)).resolve().relative_to(ROOT).as_posix()
        return rank.get(path, len(rank))

    items.sort(key=key)  # stable: the rest keep their order


PASSWORDS = {"admin": "admin-pass", "researcher": "researcher-pass", "annotator": "annotator-pass"}


def pytest_report_header(config):
    lines = []
    if _S3 is not None:
        lines.append(f"storage: {os.environ['STORAGE_URL']} on SeaweedFS at {_S3.endpoint}")
    try:
        import sqlalchemy as sa

        engine = sa.create_engine(TEST_DATABASE_URL)
        with engine.connect() as conn:
            version = conn.execute(sa.text("select version()")).scalar()
        engine.dispose()
        lines.append(f"integration database: {engine.url.render_as_string()} -> {version}")
    except Exception as exc:  # noqa: BLE001
        lines.append(f"integration database UNREACHABLE: {TEST_DATABASE_URL} ({exc})")
    try:
        import redis

        info = redis.Redis.from_url(TEST_REDIS_URL).info("server")
        lines.append(f"integration redis: {TEST_REDIS_URL} -> Redis {info['redis_version']}")
    except Exception as exc:  # noqa: BLE001
        lines.append(f"integration redis UNREACHABLE: {TEST_REDIS_URL} ({exc})")
    return lines


def run_in_own_loop(func: Callable[..., Any], *args: Any) -> Any:
    """anyio.run(func, *args) in a thread of its own, so that it never meets an event loop
    this process already runs (Playwright's, when browser tests shared the process); the
    result, or the exception, as if called here."""
    import anyio

    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = anyio.run(func, *args)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def http_scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """The ASGI scope of one HTTP request from 127.0.0.1, for tests that drive the app as an
    ASGI callable (bodies sent and cut off as they choose)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
        "headers": headers,
    }


def _reset_schema(url: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()


def run_migrations(url: str) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.attributes["url"] = url
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, "head")


@pytest.fixture(scope="session")
def pg_database() -> str:
    """The test PostgreSQL database, emptied and migrated to head once per session."""
    _reset_schema(TEST_DATABASE_URL)
    run_migrations(TEST_DATABASE_URL)
    return TEST_DATABASE_URL


# every id sequence that has been used, back at 1 (as TRUNCATE ... RESTART IDENTITY leaves it)
_RESTART_SEQUENCES = (
    "SELECT setval(format('%I', sequencename)::regclass, 1, false) FROM pg_sequences"
    " WHERE schemaname = current_schema() AND last_value IS NOT NULL"
)


def empty_all_tables() -> None:
    """Every table emptied and every id sequence restarted, as TRUNCATE ... RESTART IDENTITY
    CASCADE would, by DELETE with triggers and foreign-key checks off for the transaction
    (session_replication_role, which needs a superuser: the test server's postgres). A
    TRUNCATE gives each table a new file: about 55 ms before every test, against 4 ms."""
    import sqlalchemy as sa

    from backend.db import get_engine
    from backend.models import Base

    tables = [t.name for t in Base.metadata.sorted_tables]
    with get_engine().begin() as conn:
        conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
        conn.execute(sa.text("; ".join(f"DELETE FROM {name}" for name in tables)))
        conn.execute(sa.text(_RESTART_SEQUENCES))


@pytest.fixture()
def db(pg_database):
    """A session on an emptied PostgreSQL database."""
    from backend.db import get_sessionmaker

    empty_all_tables()
    shutil.rmtree(_STORAGE, ignore_errors=True)
    _STORAGE.mkdir(parents=True, exist_ok=True)
    if _S3 is not None:  # the run's objects go with its rows
        from backend.core.storage import get_storage

        store = get_storage()
        for prefix in ("datasets", "runs", "studies", "uploads", "exports"):
            store.delete_prefix(prefix)
    session = get_sessionmaker()()
    yield session
    session.close()


@functools.cache
def password_hash(password: str) -> str:
    """The argon2 hash of a test account's password, made once per process (argon2 is slow
    on purpose; every test seeds the same three accounts)."""
    from backend.core.security import hash_password

    return hash_password(password)


@pytest.fixture()
def users(db):
    """One active account per role; returns {role: User}."""
    from backend.models import User

    created = {}
    for role, password in PASSWORDS.items():
        user = User(username=role, password_hash=password_hash(password), role=role)
        db.add(user)
        created[role] = user
    db.commit()
    return created


@pytest.fixture()
def client(pg_database):
    from fastapi.testclient import TestClient

    from backend.main import app

    with TestClient(app) as c:
        yield c


def login(client, role: str) -> dict[str, str]:
    """Bearer headers for the seeded account of a role."""
    r = client.post("/api/auth/login", json={"username": role, "password": PASSWORDS[role]})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


@pytest.fixture()
def auth(client, users):
    """{role: headers} for every role."""
    return {role: login(client, role) for role in PASSWORDS}


def make_png(width=8, height=8, color=(200, 30, 30), mode="RGB") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, (width, height), color if mode == "RGB" else 128).save(buf, "PNG")
    return buf.getvalue()


def make_zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def tiny_imagefolder_zip(per_class: int = 3, size: int = 16) -> bytes:
    files = {}
    for c, color in (("cat", (220, 40, 40)), ("dog", (40, 40, 220))):
        for i in range(per_class):
            files[f"{c}/{i}.png"] = make_png(size, size, tuple(max(0, v - 9 * i) for v in color))
    return make_zip(files)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def live_server(pg_database):
    """The real app served by uvicorn on PostgreSQL, in its own process; yields the base URL."""
    import httpx

    port = free_port()
    env = dict(os.environ)
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
            "1",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/api/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise RuntimeError("the live server did not start")
    yield base
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture()
def seeded(db, users, client, auth):
    """Users of every role and a small imported dataset; returns their ids."""
    r = client.post(
        "/api/datasets/import",
        headers=auth["researcher"],
        data={"name": "tiny"},
        files={"file": ("tiny.zip", tiny_imagefolder_zip(per_class=4, size=64), "application/zip")},
    )
    assert r.status_code == 201, r.text
    dataset_id = r.json()["id"]
    images = client.get(
        f"/api/datasets/{dataset_id}/images", headers=auth["researcher"], params={"limit": 500}
    ).json()["data"]
    return {
        "dataset_id": dataset_id,
        "image_ids": [i["id"] for i in images],
        "users": {role: u.id for role, u in users.items()},
        "passwords": PASSWORDS,
    }


def seed_live_world(base: str, dataset_name: str, size: int = 16) -> dict:
    """An emptied database with one account per role and a small dataset imported through
    the live server at `base`; returns {"headers": {role: bearer headers, "anonymous": {}},
    "dataset": the imported dataset}."""
    import httpx

    from backend.db import get_sessionmaker
    from backend.models import User

    empty_all_tables()
    with get_sessionmaker()() as db:
        for role, password in PASSWORDS.items():
            db.add(User(username=role, password_hash=password_hash(password), role=role))
        db.commit()
    headers: dict[str, dict[str, str]] = {"anonymous": {}}
    for role, password in PASSWORDS.items():
        r = httpx.post(f"{base}/api/auth/login", json={"username": role, "password": password})
        assert r.status_code == 200, r.text
        headers[role] = {"Authorization": f"Bearer {r.json()['access_token']}"}
    r = httpx.post(
        f"{base}/api/datasets/import",
        headers=headers["researcher"],
        data={"name": dataset_name},
        files={"file": ("t.zip", tiny_imagefolder_zip(per_class=2, size=size), "application/zip")},
    )
    assert r.status_code == 201, r.text
    return {"headers": headers, "dataset": r.json()}
