"""Logins kept in server memory (backend/services/logins.py, current_login) end at once in
every server process: a logout, a password change, an admin's change of role and an admin's
deactivation, each made through one process, hold for the very next request whichever of
two uvicorn worker processes answers it (PostgreSQL, the auth epoch read as a connection
leaves the pool)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import PASSWORDS, ROOT, free_port, password_hash

# Requests per check, each on a connection of its own: the kernel hands new connections to
# either worker process, so both answer some of them (both have the login kept beforehand).
ROUNDS = 12


@pytest.fixture()
def two_workers(db, users):
    """The app served by uvicorn with 2 worker processes on the test database, with four
    more annotators; yields the base URL."""
    from backend.models import User

    for i in range(4):
        db.add(User(username=f"kept{i}", password_hash=password_hash("kept-pass-1234"),
                    role="annotator"))  # fmt: skip
    db.commit()
    # the table is emptied between tests: put the epoch row back as the migration made it
    db.execute(sa.text("INSERT INTO auth_epoch (id, value) VALUES (1, 0) ON CONFLICT DO NOTHING"))
    db.commit()
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "backend.main:app", "--host", "127.0.0.1", "--port",
         str(port), "--workers", "2", "--log-level", "warning"],
        cwd=ROOT, env=dict(os.environ),
    )  # fmt: skip
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
        raise RuntimeError("the server did not start")
    yield base
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def _login(base: str, username: str, password: str) -> dict[str, str]:
    r = httpx.post(base + "/api/auth/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _statuses(base: str, path: str, headers: dict[str, str]) -> set[int]:
    """The statuses of ROUNDS requests, each on a new connection (either worker answers)."""
    seen = set()
    for _ in range(ROUNDS):
        with httpx.Client(base_url=base) as c:
            seen.add(c.get(path, headers={**headers, "Connection": "close"}).status_code)
    return seen


def test_revocations_hold_at_once_in_every_worker_process(two_workers):
    base = two_workers
    admin = _login(base, "admin", PASSWORDS["admin"])
    ids = {
        u["username"]: u["id"] for u in httpx.get(base + "/api/users", headers=admin).json()["data"]
    }
    tokens = {f"kept{i}": _login(base, f"kept{i}", "kept-pass-1234") for i in range(4)}
    other_tab = _login(base, "kept1", "kept-pass-1234")
    for headers in (*tokens.values(), other_tab):  # every login is kept by both processes
        assert _statuses(base, "/api/annotate/datasets", headers) == {200}

    # a logout
    r = httpx.post(base + "/api/auth/logout", headers=tokens["kept0"])
    assert r.status_code == 204
    assert _statuses(base, "/api/auth/me", tokens["kept0"]) == {401}

    # a password change ends the account's other sessions, and keeps the one that made it
    r = httpx.post(
        base + "/api/auth/password",
        headers=other_tab,
        json={"current_password": "kept-pass-1234", "new_password": "a-new-pass-5678"},
    )
    assert r.status_code == 200, r.text
    assert _statuses(base, "/api/auth/me", tokens["kept1"]) == {401}
    assert _statuses(base, "/api/auth/me", other_tab) == {200}

    # an admin's change of role: the old role's routes refuse at once, the new role's admit
    r = httpx.patch(base + f"/api/users/{ids['kept2']}", headers=admin, json={"role": "researcher"})
    assert r.status_code == 200, r.text
    assert _statuses(base, "/api/annotate/datasets", tokens["kept2"]) == {403}
    assert _statuses(base, "/api/runs", tokens["kept2"]) == {200}

    # an admin's deactivation
    r = httpx.patch(base + f"/api/users/{ids['kept3']}", headers=admin, json={"is_active": False})
    assert r.status_code == 200, r.text
    assert _statuses(base, "/api/auth/me", tokens["kept3"]) == {401}

    # the admin's own login, kept all along, still works in both processes
    assert _statuses(base, "/api/auth/me", admin) == {200}
