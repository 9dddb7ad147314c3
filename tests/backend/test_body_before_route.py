"""A request body is judged before its route runs: an over-long body (declared or chunked) on
a route that takes none is refused with 413 and nothing happens (a logout does not log out);
an annotator's upload to an import route is refused 403 before a byte of it is read; a 405
names every method its path takes."""

from __future__ import annotations

import anyio

from backend.core.config import get_settings
from backend.main import app
from tests.conftest import http_scope, run_in_own_loop

LIMIT = get_settings().max_json_body_bytes


def _chunks(total: int, step: int = 2**16):
    sent = 0
    while sent < total:
        yield bytes(min(step, total - sent))
        sent += step


def _still_logged_in(client, headers) -> bool:
    return client.get("/api/auth/me", headers=headers).status_code == 200


def test_an_over_long_body_on_a_route_without_one_is_refused_before_it_runs(client, auth):
    h = auth["annotator"]
    r = client.post("/api/auth/logout", headers=h, content=bytes(LIMIT + 1))
    assert r.status_code == 413, r.text
    assert r.json()["detail"] == "The request body is larger than the allowed size."
    assert _still_logged_in(client, h), "the logout ran before its 413"
    r = client.post("/api/auth/sign-out-everywhere", headers=h, content=bytes(LIMIT + 1))
    assert r.status_code == 413 and _still_logged_in(client, h)


def test_a_chunked_over_long_body_is_refused_too(client, auth):
    h = auth["annotator"]
    r = client.post("/api/auth/logout", headers=h, content=_chunks(LIMIT + 2**16))
    assert r.status_code == 413, r.text
    assert r.json()["detail"] == "The request body is larger than the allowed size."
    assert _still_logged_in(client, h)


def test_a_small_body_on_a_route_without_one_is_ignored_as_before(client, auth):
    h = auth["annotator"]
    r = client.post("/api/auth/logout", headers=h, content=_chunks(100))
    assert r.status_code == 204, r.text
    assert not _still_logged_in(client, h)


def _asgi_post(path: str, headers: dict[str, str], total: int) -> tuple[int, bytes, int]:
    """POST a chunked body of `total` bytes straight to the app; (status, body, how many
    body chunks the app pulled)."""
    pulled = 0
    out: dict[str, object] = {"body": b""}
    step = 2**20

    async def receive():
        nonlocal pulled
        if pulled * step >= total:
            await anyio.sleep_forever()
        pulled += 1
        return {"type": "http.request", "body": bytes(step), "more_body": pulled * step < total}

    async def send(message):
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
        elif message["type"] == "http.response.body":
            out["body"] = out["body"] + message.get("body", b"")

    scope = http_scope("POST", path, [(k.lower().encode(), v.encode()) for k, v in headers.items()])

    async def main():
        with anyio.fail_after(30):
            await app(scope, receive, send)

    run_in_own_loop(main)
    return int(out["status"]), bytes(out["body"]), pulled


def test_an_annotators_upload_is_refused_before_its_body_is_read(client, auth, seeded):
    headers = {
        **auth["annotator"],
        "content-type": "multipart/form-data; boundary=xyz",
        "transfer-encoding": "chunked",
    }
    for path in ("/api/datasets/import", f"/api/datasets/{seeded['dataset_id']}/masks/import"):
        status, body, pulled = _asgi_post(path, headers, 300 * 2**20)
        assert status == 403, body
        assert b"Your role may not do this." in body
        assert pulled == 0, f"{pulled} MiB were read before the 403"


def test_405_names_every_method_of_the_path(client, auth):
    r = client.delete("/api/datasets/1/mask-sets", headers=auth["researcher"])
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, POST"
    assert r.json()["detail"].endswith(".")
    r = client.delete("/api/runs", headers=auth["researcher"])
    assert r.status_code == 405 and r.headers["allow"] == "GET, POST"
