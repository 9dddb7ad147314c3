"""The researcher's preview of a study's stimuli: the list with the L-inf distance measured from the
files, and the stored PNG of each. Real checkpoints, real PGD, real PostgreSQL."""

from __future__ import annotations

import hashlib
import io

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import select

from tests.backend import study_support
from tests.backend.study_support import make_dataset, make_run, ready_study


def _pixels(data: bytes) -> np.ndarray:
    with PILImage.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.int32)


def _all_pages(client, headers, study_id: int, limit: int, **params) -> list[dict]:
    """Every item of the list, fetched page by page."""
    items: list[dict] = []
    offset = 0
    while True:
        r = client.get(
            f"/api/studies/{study_id}/stimuli",
            params={**params, "limit": limit, "offset": offset},
            headers=headers,
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["limit"] == limit and body["offset"] == offset
        assert len(body["data"]) <= limit
        items += body["data"]
        offset += limit
        if offset >= body["count"]:
            assert len(items) == body["count"]
            return items


def _check_linf(db, items: list[dict]) -> None:
    """Each measured L-inf is within the stimulus's budget, 0 at epsilon 0, and equals the
    distance computed here from the stored files."""
    from backend.core.storage import get_storage
    from backend.models import Image, Stimulus

    storage = get_storage()
    for it in items:
        s = db.get(Stimulus, it["id"])
        src = _pixels(storage.get_bytes(db.get(Image, s.source_image_id).storage_key))
        own = int(np.abs(_pixels(storage.get_bytes(s.storage_key)) - src).max())
        assert it["linf_255"] == own, it
        assert it["linf_255"] <= s.epsilon * 255 + 1e-6, it
        if s.epsilon == 0:
            assert it["linf_255"] == 0, it
        assert (it["width"], it["height"]) == (study_support.SIZE, study_support.SIZE)


def test_preview_lists_every_stimulus_measures_linf_and_serves_the_stored_png(
    client, auth, db, tiny_checkpoint
):
    from backend.models import Stimulus

    h = auth["researcher"]
    ds, _ = make_dataset(db, n=12)
    run_id = make_run(db, ds, tiny_checkpoint, name="plain")
    study = ready_study(client, h, db, [run_id], epsilons_255=[0, 4, 16], open_=False)
    sid = study["id"]
    rows = {s.id: s for s in db.scalars(select(Stimulus).where(Stimulus.study_id == sid))}
    assert rows

    # every stimulus of the study, once, with its run, epsilon, purpose and seed
    items = _all_pages(client, h, sid, limit=7)
    assert sorted(it["id"] for it in items) == sorted(rows)
    for it in items:
        s = rows[it["id"]]
        assert it["run_id"] == s.run_id
        assert it["run_name"] == ("plain" if s.run_id is not None else None)
        assert it["source_image_id"] == s.source_image_id
        assert it["epsilon"] == s.epsilon
        assert abs(it["epsilon_255"] - s.epsilon * 255) < 1e-6
        assert (it["purpose"], it["attack"], it["seed"]) == (s.purpose, s.attack, s.seed)
        assert it["image_url"] == f"/api/studies/{sid}/stimuli/{s.id}/image"
    first = client.get(f"/api/studies/{sid}/stimuli", headers=h).json()
    assert first["count"] == len(rows) and len(first["data"]) == min(50, len(rows))
    purposes = [s.purpose for s in rows.values()]
    assert first["by_purpose"] == {p: purposes.count(p) for p in set(purposes)}
    assert {round(it["epsilon_255"]) for it in items if it["purpose"] == "main"} == {0, 4, 16}

    _check_linf(db, items)
    # the attack really used its budget somewhere (the measurement is not trivially 0)
    assert max(it["linf_255"] for it in items if round(it["epsilon_255"]) == 16) >= 8

    # the image route returns the stored bytes exactly
    for it in items:
        r = client.get(it["image_url"], headers=h)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/png"
        assert hashlib.sha256(r.content).hexdigest() == rows[it["id"]].sha256

    # filters
    main4 = _all_pages(client, h, sid, limit=50, purpose="main", epsilon_255=4, run_id=run_id)
    want = {i for i, s in rows.items() if s.purpose == "main" and round(s.epsilon * 255) == 4}
    assert {it["id"] for it in main4} == want and want
    same = _all_pages(client, h, sid, limit=50, purpose="main", epsilon=4 / 255)
    assert {it["id"] for it in same} == want
    refs = _all_pages(client, h, sid, limit=50, purpose="reference")
    assert refs and all(it["run_id"] is None and it["linf_255"] == 0 for it in refs)
    # a page of main stimuli is ordered by source image, then epsilon (the page's grid)
    page = client.get(
        f"/api/studies/{sid}/stimuli",
        params={"run_id": run_id, "purpose": "main", "limit": 6},
        headers=h,
    ).json()["data"]
    keys = [(it["source_image_id"], it["epsilon"]) for it in page]
    assert keys == sorted(keys) and len({k[0] for k in keys}) == 2


def test_preview_refuses_other_studies_bad_input_and_other_roles(client, auth, db, tiny_checkpoint):
    from backend.core.storage import get_storage
    from backend.models import Stimulus

    h = auth["researcher"]
    ds, _ = make_dataset(db, n=12)
    run_id = make_run(db, ds, tiny_checkpoint)
    other_run = make_run(db, ds, tiny_checkpoint, name="other")
    a = ready_study(client, h, db, [run_id], epsilons_255=[0, 4], open_=False)
    b = ready_study(client, h, db, [run_id], design="yesno", epsilons_255=[2, 8], seed=5)
    b_items = _all_pages(client, h, b["id"], limit=200)
    _check_linf(db, b_items)  # yes/no: the clean main images (epsilon 0) are the source exactly
    assert any(it["purpose"] == "main" and it["epsilon"] == 0 for it in b_items)
    a_ids = set(db.scalars(select(Stimulus.id).where(Stimulus.study_id == a["id"])))
    foreign = b_items[0]["id"]
    assert foreign not in a_ids

    # a stimulus of another study is not found through this one
    r = client.get(f"/api/studies/{a['id']}/stimuli/{foreign}/image", headers=h)
    assert r.status_code == 404
    assert r.json()["detail"] == f"Stimulus {foreign} is not part of study {a['id']}."
    assert client.get(f"/api/studies/{a['id']}/stimuli/999999/image", headers=h).status_code == 404
    assert client.get(f"/api/studies/999999/stimuli/{foreign}/image", headers=h).status_code == 404
    assert client.get("/api/studies/999999/stimuli", headers=h).status_code == 404
    ok = client.get(f"/api/studies/{b['id']}/stimuli/{foreign}/image", headers=h)
    assert ok.status_code == 200

    # bad input: 4xx with one sentence
    bad = [
        ({"limit": 0}, 422),
        ({"limit": 1000}, 422),
        ({"offset": -1}, 422),
        ({"purpose": "secret"}, 422),
        ({"epsilon_255": -1}, 422),
        ({"epsilon": 2}, 422),
        ({"run_id": "x"}, 422),
        ({"run_id": other_run}, 422),
        ({"epsilon": 4 / 255, "epsilon_255": 8}, 400),
    ]
    for params, status in bad:
        r = client.get(f"/api/studies/{a['id']}/stimuli", params=params, headers=h)
        assert r.status_code == status, (params, r.text)
        detail = r.json()["detail"]
        assert isinstance(detail, str) and detail.endswith("."), (params, detail)
    r = client.get(f"/api/studies/{a['id']}/stimuli", params={"run_id": other_run}, headers=h)
    assert r.json()["detail"] == f"Run {other_run} is not part of this study."
    # past the end: an empty page, not an error
    r = client.get(f"/api/studies/{a['id']}/stimuli", params={"offset": 10_000}, headers=h)
    assert r.status_code == 200 and r.json()["data"] == [] and r.json()["count"] == len(a_ids)

    # a missing file: the list says "unknown", the image route says why
    gone = db.get(Stimulus, min(a_ids))
    get_storage().delete(gone.storage_key)
    items = _all_pages(client, h, a["id"], limit=200)
    lost = next(it for it in items if it["id"] == gone.id)
    assert lost["linf_255"] is None and lost["width"] is None
    assert all(it["linf_255"] is not None for it in items if it["id"] != gone.id)
    r = client.get(f"/api/studies/{a['id']}/stimuli/{gone.id}/image", headers=h)
    assert r.status_code == 404 and r.json()["detail"].endswith("missing from storage.")

    # annotators may not look; nor may anyone without a login
    some = next(iter(a_ids - {gone.id}))
    for url in (f"/api/studies/{a['id']}/stimuli", f"/api/studies/{a['id']}/stimuli/{some}/image"):
        r = client.get(url, headers=auth["annotator"])
        assert r.status_code == 403 and r.json()["detail"] == "Your role may not do this."
        client.cookies.clear()
        assert client.get(url).status_code == 401
        assert client.get(url, headers=auth["admin"]).status_code == 200
