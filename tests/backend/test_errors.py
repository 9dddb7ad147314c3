"""The one error model: a domain error raised anywhere under a route becomes the response
request validation gives, `{detail, errors}`, with the status of its class."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.testclient import TestClient

from backend.core.errors import Conflict, Invalid, NotFound, TooLarge, Unavailable, Unreadable
from backend.main import create_app


def _client() -> TestClient:
    app = create_app()
    probe = APIRouter()
    raised = {
        "invalid": Invalid("The answer must be left or right."),
        "field": Invalid("Run 9 does not exist.", field="run_ids"),
        "several": Invalid(
            "The run was not launched: check eps, seeds.",
            errors=[
                {"field": "eps", "message": "too large"},
                {"field": "seeds", "message": "empty"},
            ],
        ),
        "unreadable": Unreadable("a.zip is not a zip archive."),
        "missing": NotFound("Run not found."),
        "conflict": Conflict("Only an open study can be closed."),
        "large": TooLarge("The upload is larger than the allowed size."),
        "down": Unavailable("The task queue could not be reached; try again later."),
    }

    @probe.get("/probe/{name}")
    def _raise(name: str) -> None:
        raise raised[name]

    app.include_router(probe, prefix="/api")
    return TestClient(app)


def test_each_domain_error_answers_with_its_status_and_sentence():
    client = _client()
    expected = {
        "invalid": 422,
        "field": 422,
        "several": 422,
        "unreadable": 400,
        "missing": 404,
        "conflict": 409,
        "large": 413,
        "down": 503,
    }
    for name, status in expected.items():
        r = client.get(f"/api/probe/{name}")
        assert r.status_code == status, (name, r.status_code, r.text)
        body = r.json()
        assert body["detail"].endswith("."), body
    assert "errors" not in client.get("/api/probe/missing").json()
    field = client.get("/api/probe/field").json()
    assert field == {
        "detail": "Invalid input — run_ids: Run 9 does not exist.",
        "errors": [{"field": "run_ids", "message": "Run 9 does not exist."}],
    }
    several = client.get("/api/probe/several").json()
    assert several["detail"] == "The run was not launched: check eps, seeds."
    assert [e["field"] for e in several["errors"]] == ["eps", "seeds"]
