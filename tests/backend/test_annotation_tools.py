"""The drawing aids of issue 28 on the server: every revision keeps its provenance (the share of
its pixels each tool contributed, the proposal it started from) and bad provenance is refused
with a sentence."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from backend.models import AnnotationRevision

from .test_annotation import body, counts, put, square


def test_provenance_is_recorded_per_revision_and_read_back(client, seeded, auth, db):
    image_id = seeded["image_ids"][0]
    h = auth["annotator"]
    payload = body(square(), "p1") | {"provenance": {"drawn": 0.25, "wand": 0.75}}
    assert put(client, h, image_id, payload).status_code == 200
    payload = body(square(4, 4, 30), "p2") | {
        "provenance": {"superpixels": 0.5, "proposal": 0.3, "refined": 0.2, "wand": 0.0},
        "proposal_source": "saliency",
    }
    assert put(client, h, image_id, payload).status_code == 200
    # an empty mask has no shares whatever the client says; an old client's save says nothing
    empty = square(0, 0, 0)
    assert put(client, h, image_id, body(empty, "p3") | {"provenance": {}}).status_code == 200
    assert put(client, h, image_id, body(square(), "p4")).status_code == 200
    revs = db.scalars(sa.select(AnnotationRevision).order_by(AnnotationRevision.revision)).all()
    assert [(r.provenance, r.proposal_source) for r in revs] == [
        ({"drawn": 0.25, "wand": 0.75}, None),
        ({"superpixels": 0.5, "proposal": 0.3, "refined": 0.2}, "saliency"),
        ({}, None),
        (None, None),
    ]
    put(client, h, image_id, body(square(), "p5") | {"provenance": {"wand": 1.0}})
    got = client.get(f"/api/annotate/images/{image_id}", headers=h).json()["annotation"]
    assert got["provenance"] == {"wand": 1.0} and got["proposal_source"] is None


BAD_PROVENANCE = {
    "unknown tool": ({"pen": 1.0}, None, "the provenance names pen"),
    "share above 1": ({"drawn": 1.5}, None, "share of drawn must be between 0 and 1"),
    "negative share": ({"drawn": 1.0, "wand": -0.2}, None, "share of wand must be between"),
    "shares not adding up": ({"drawn": 0.5, "wand": 0.2}, None, "add up to 0.700, not 1"),
    "no tool for a drawn mask": ({}, None, "its provenance names no tool"),
    "proposal without a source": ({"proposal": 1.0}, None, "must name the proposal's source"),
    "unknown source": ({"drawn": 1.0}, "sam", 'must be "saliency" or "run:"'),
    "not a number": ({"drawn": "all"}, None, "valid number"),
}


@pytest.mark.parametrize("case", sorted(BAD_PROVENANCE))
def test_bad_provenance_is_refused_with_a_sentence(client, seeded, auth, db, case):
    image_id = seeded["image_ids"][0]
    provenance, source, words = BAD_PROVENANCE[case]
    before = counts(db)
    payload = body(square(), "bad") | {"provenance": provenance, "proposal_source": source}
    r = put(client, auth["annotator"], image_id, payload)
    assert r.status_code == 422, r.text
    assert words in r.json()["detail"], r.json()
    assert counts(db) == before
