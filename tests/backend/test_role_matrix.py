"""Every API route x every role: 401 without a login, 403 for a role that may not, and past the
check (neither 401 nor 403) for a role that may. A route missing from the tables fails the test.

Tables live in tests/backend/roles_*.py (one per area), each exporting ROUTES."""

import importlib
import pkgutil

import pytest

import tests.backend as pkg
from backend.main import app

ROLES = ("admin", "researcher", "annotator")


def _tables() -> dict:
    merged: dict = {}
    for mod in pkgutil.iter_modules(pkg.__path__):
        if mod.name.startswith("roles_"):
            merged.update(importlib.import_module(f"tests.backend.{mod.name}").ROUTES)
    return merged


EXPECTED = _tables()
# The OpenAPI document lists every API route with its methods (routes hidden from the schema
# are not allowed under /api: the same test would not see them).
API_ROUTES = sorted(
    (method.upper(), path)
    for path, operations in app.openapi()["paths"].items()
    if path.startswith("/api")
    for method in operations
)


def test_every_route_has_an_entry():
    missing = [r for r in API_ROUTES if r not in EXPECTED]
    assert not missing, f"routes without an entry in tests/backend/roles_*.py: {missing}"
    stale = [r for r in EXPECTED if r not in API_ROUTES]
    assert not stale, f"entries for routes that no longer exist: {stale}"


def _fill(path: str, seeded: dict) -> str:
    values = {
        "dataset_id": seeded["dataset_id"],
        "image_id": seeded["image_ids"][0],
        "user_id": seeded["users"]["annotator"],
    }
    for name in ("dataset_id", "image_id", "user_id"):
        path = path.replace("{" + name + "}", str(values[name]))
    # any other id: an id that exists in no table (404 is past the role check)
    import re

    return re.sub(r"\{[a-z_]+\}", "999999", path)


@pytest.mark.parametrize(("method", "path"), API_ROUTES)
def test_role_matrix(client, seeded, auth, method, path):
    allowed = EXPECTED[(method, path)]
    url = _fill(path, seeded)
    if "participant" in allowed:
        pytest.fail(
            "participant routes are checked in the study tests, not here"
        )  # pragma: no cover
    client.cookies.clear()  # the fixtures logged in through this client
    anon = client.request(method, url, json={})
    if "public" in allowed:
        assert anon.status_code not in (401, 403), (method, path, anon.status_code)
        return
    assert anon.status_code == 401, (method, path, anon.status_code, anon.text)
    # the refused roles first: an allowed call may end another role's login (an admin's
    # "sign out everywhere" of the annotator the path names)
    for role in sorted(ROLES, key=lambda role: role in allowed):
        r = client.request(method, url, headers=auth[role], json={})
        if role in allowed:
            assert r.status_code not in (401, 403), (method, path, role, r.status_code, r.text)
        else:
            assert r.status_code == 403, (method, path, role, r.status_code, r.text)
            assert r.json()["detail"] == "Your role may not do this."
