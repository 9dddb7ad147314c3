"""Inputs a careless or hostile client sends get a 4xx with a sentence, never a 5xx, and a
stranger learns nothing: ids beyond the database's integer range, negative ids, text that
is valid JSON but not storable Unicode, and lookups before the login check."""

from __future__ import annotations

import pytest

from backend.models import Dataset

HUGE = 2**63  # beyond PostgreSQL's integer (and bigint) range


@pytest.mark.parametrize(
    "path",
    [
        f"/api/datasets/{HUGE}",
        f"/api/images/{HUGE}/file",
        f"/api/runs/{HUGE}",
        f"/api/studies/{HUGE}",
        f"/api/mask-sets/{HUGE}",
        f"/api/annotations/{HUGE}/mask.png",
        f"/api/runs/inequality/{HUGE}",
        "/api/datasets/-5",
        f"/api/runs?dataset_id={HUGE}",
        f"/api/reviews?annotator_id={HUGE}",
    ],
)
def test_ids_beyond_the_database_range_are_refused_with_a_sentence(client, auth, path):
    r = client.get(path, headers=auth["admin"])
    assert r.status_code == 422, (path, r.status_code, r.text)
    assert r.json()["detail"].endswith("."), r.json()


def test_ids_in_bodies_are_held_to_the_same_range(client, auth, seeded):
    r = client.post(
        "/api/runs", headers=auth["researcher"], json={"dataset_id": HUGE, "method": "standard"}
    )
    assert r.status_code == 422 and "dataset_id" in r.text
    r = client.post("/api/runs/inequality", headers=auth["researcher"], json={"run_ids": [HUGE]})
    assert r.status_code == 422


def test_a_stranger_cannot_tell_which_ids_exist(client, seeded, db):
    client.cookies.clear()  # the fixtures logged this client in
    existing = db.query(Dataset).first().id
    for dataset_id in (existing, existing + 1000):
        assert client.get(f"/api/datasets/{dataset_id}").status_code == 401
    image_id = seeded["image_ids"][0]
    for i in (image_id, image_id + 1000):
        assert client.get(f"/api/images/{i}/file").status_code == 401


def test_a_lone_surrogate_is_refused_and_nothing_is_stored(client, auth, seeded, db):
    before = db.query(Dataset).get(seeded["dataset_id"]).description
    body = '{"description": "half a pair: \\ud800"}'
    r = client.patch(
        f"/api/datasets/{seeded['dataset_id']}",
        headers={**auth["researcher"], "Content-Type": "application/json"},
        content=body,
    )
    assert r.status_code == 422, r.text
    assert "unicode" in r.json()["detail"].lower()
    db.expire_all()
    assert db.query(Dataset).get(seeded["dataset_id"]).description == before
    # a whole pair (an emoji written as two escapes) is text like any other
    r = client.patch(
        f"/api/datasets/{seeded['dataset_id']}",
        headers={**auth["researcher"], "Content-Type": "application/json"},
        content='{"description": "pair: \\ud83d\\ude00"}',
    )
    assert r.status_code == 200, r.text


def test_the_mask_body_of_a_stranger_is_not_read(client, seeded):
    client.cookies.clear()
    image_id = seeded["image_ids"][0]
    r = client.put(
        f"/api/annotate/images/{image_id}/mask",
        content=b"x" * 1_000_000,
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 401


def test_text_the_database_cannot_store_is_a_422(client, users):
    """A NUL character is valid JSON and valid Unicode, but PostgreSQL text cannot hold it."""
    r = client.post("/api/auth/login", json={"username": "a\u0000b", "password": "whatever-1"})
    assert r.status_code in (401, 422), r.text
    assert r.json()["detail"].endswith("."), r.text


def test_an_offset_beyond_the_database_range_is_a_422(client, auth):
    r = client.get(f"/api/reviews?offset={HUGE}", headers=auth["researcher"])
    assert r.status_code == 422, r.text
