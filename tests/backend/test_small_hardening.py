"""Smaller hardening: security headers on the pages and files, look-alike usernames refused,
and strict types for what a participant's page sends."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from backend.schemas.studies import AnswerIn


def test_pages_files_and_api_carry_the_security_headers(client, auth, seeded):
    image_id = seeded["image_ids"][0]
    for path, headers in (
        ("/", {}),
        ("/s/some-link", {}),
        ("/static/app.js", {}),
        (f"/api/images/{image_id}/file", auth["annotator"]),
        ("/api/health", {}),
    ):
        r = client.get(path, headers=headers)
        assert r.status_code == 200, (path, r.status_code)
        csp = r.headers.get("content-security-policy", "")
        assert "frame-ancestors 'none'" in csp, (path, csp)
        assert "default-src 'self'" in csp and "script-src 'self'" in csp, (path, csp)
        assert r.headers.get("x-content-type-options") == "nosniff", path
        assert r.headers.get("x-frame-options") == "DENY", path
        assert r.headers.get("referrer-policy") == "same-origin", path
        # the headers are sent once, even where a route sets one itself
        assert len(r.headers.get_list("x-content-type-options")) == 1, path


def test_look_alike_usernames_are_refused(client, auth):
    h = auth["admin"]
    password = "a-long-and-fine-passphrase"
    r = client.post("/api/users", headers=h, json={"username": "admin1", "password": password,
                                                   "role": "annotator"})  # fmt: skip
    assert r.status_code == 201, r.text
    for twin in ("Admin1", "ADMIN1", "admin1.", "Admin1-", "admin1..", "admin1_@"):
        r = client.post("/api/users", headers=h, json={"username": twin, "password": password,
                                                       "role": "annotator"})  # fmt: skip
        assert r.status_code == 409, (twin, r.text)
        assert r.json()["detail"] == (
            f"The username {twin!r} is too like the existing 'admin1' (letters compared "
            "without case, trailing punctuation ignored); choose another."
        )
    # the seeded "admin" is no twin of "admin1"; "admin.1" is another name
    for other in ("admin2", "admin.1"):
        r = client.post("/api/users", headers=h, json={"username": other, "password": password,
                                                       "role": "annotator"})  # fmt: skip
        assert r.status_code == 201, (other, r.text)


def test_a_look_alike_is_refused_by_the_command_line_too(db, users):
    from backend.services.users import similar_username

    assert similar_username(db, "ANNOTATOR.") == "annotator"
    assert similar_username(db, "annotator2") is None


@pytest.mark.parametrize(
    "body",
    [
        {"answer": "left", "rt_ms": False},
        {"answer": "left", "rt_ms": True},
        {"answer": "left", "rt_ms": "500"},
        {"answer": "left", "rt_ms": 500, "shown_at": 0},
        {"answer": "left", "rt_ms": 500, "shown_at": "1970-01-01T00:00:00Z"},
        {"answer": "left", "rt_ms": 500, "shown_at": "2999-01-01T00:00:00Z"},
    ],
)
def test_answers_refuse_booleans_and_implausible_times(body):
    with pytest.raises(ValidationError):
        AnswerIn.model_validate_json(json.dumps(body))
    with pytest.raises(ValidationError):  # as FastAPI validates a parsed body
        AnswerIn.model_validate(body)


def test_answers_take_what_the_page_sends():
    now = datetime.now(UTC) - timedelta(seconds=3)
    got = AnswerIn.model_validate_json(
        '{"answer": "left", "rt_ms": 512, "shown_at": "' + now.isoformat() + '"}'
    )
    assert got.rt_ms == 512.0 and got.shown_at == now
    assert AnswerIn.model_validate_json('{"answer": "no", "rt_ms": 12.5}').shown_at is None
    parsed = AnswerIn.model_validate({"answer": "left", "rt_ms": 5, "shown_at": now.isoformat()})
    assert parsed.shown_at == now and parsed.rt_ms == 5.0
