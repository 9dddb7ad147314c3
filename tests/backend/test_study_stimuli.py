"""Study creation and stimulus generation: real checkpoints, real PGD, real PostgreSQL."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import redis
import torch
from PIL import Image as PILImage
from sqlalchemy import func, select

from tests.backend.study_support import make_dataset, make_run, ready_study
from tests.conftest import TEST_REDIS_URL


def _pixels(data: bytes) -> np.ndarray:
    with PILImage.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.int32)


def test_stimuli_respect_eps_are_real_attacks_and_eps0_is_the_source(
    client, auth, db, tiny_checkpoint, tmp_path
):
    from backend.core.storage import get_storage
    from backend.models import Image, Stimulus, Study
    from worker.sipat import load_model_from_checkpoint
    from worker.study_tasks import generate_stimuli

    ds, _ = make_dataset(db, n=30)
    run_id = make_run(db, ds, tiny_checkpoint)
    study = ready_study(client, auth["researcher"], db, [run_id], num_random_images=30, open_=False)
    assert study["state"] == "ready" and study["progress"] == 1.0
    storage = get_storage()
    stimuli = list(db.scalars(select(Stimulus).where(Stimulus.study_id == study["id"])))
    # every main image x every eps, plus catch, practice, example and the 2AFC references
    cfg = db.get(Study, study["id"]).config
    assert len(cfg["images"]["main"]) == 30 - 1 - 2 - 1
    assert sum(s.purpose == "main" for s in stimuli) == len(cfg["images"]["main"]) * 3

    local = tmp_path / "final.pt"
    storage.download(f"runs/{run_id}/final.pt", local)
    model = load_model_from_checkpoint(local)
    by_eps: dict[float, list[tuple[np.ndarray, int]]] = {}
    for s in stimuli:
        img = db.get(Image, s.source_image_id)
        src = _pixels(storage.get_bytes(img.storage_key))
        adv = _pixels(storage.get_bytes(s.storage_key))
        eps_255 = s.epsilon * 255
        assert adv.shape == src.shape
        assert np.abs(adv - src).max() <= eps_255 + 1, (s.purpose, eps_255)
        if s.epsilon == 0:
            assert np.array_equal(adv, src)
        # the storage key and public id name nothing about the stimulus
        assert re.fullmatch(r"studies/\d+/stimuli/[0-9a-f]{32}\.png", s.storage_key)
        assert len(s.public_id) >= 20 and s.seed >= 0 and s.attack == "pgd-linf"
        if s.purpose == "main":
            by_eps.setdefault(round(eps_255), []).append((adv, img.dataset_class.index))
    # perturbations are attacks from this run: they lower its accuracy on those images
    accs = {}
    for e, items in by_eps.items():
        x = (
            torch.tensor(np.stack([a for a, _ in items]), dtype=torch.float32).permute(0, 3, 1, 2)
            / 255
        )
        y = torch.tensor([label for _, label in items])
        with torch.no_grad():
            accs[e] = float((model(x).argmax(1) == y).float().mean())
    assert accs[16] < accs[0] - 0.2, accs
    assert accs[4] <= accs[0], accs
    # a perturbation at eps 16 uses most of its budget (not a no-op)
    main16 = [s for s in stimuli if s.purpose == "main" and round(s.epsilon * 255) == 16]
    img = db.get(Image, main16[0].source_image_id)
    diff = np.abs(
        _pixels(storage.get_bytes(main16[0].storage_key))
        - _pixels(storage.get_bytes(img.storage_key))
    )
    assert diff.max() >= 8

    # idempotent: running again makes nothing new
    n_before = db.scalar(select(func.count()).select_from(Stimulus))
    assert generate_stimuli(db, storage, study["id"]) == 0
    assert db.scalar(select(func.count()).select_from(Stimulus)) == n_before


def test_generation_resumes_after_an_interruption(client, auth, db, tiny_checkpoint):
    from backend.core.storage import get_storage
    from backend.models import Stimulus, Study
    from worker.study_tasks import generate_stimuli

    ds, _ = make_dataset(db, n=12)
    run_id = make_run(db, ds, tiny_checkpoint)
    study = ready_study(client, auth["researcher"], db, [run_id], generate=False)
    storage = get_storage()
    seen: list[float] = []

    def stop_halfway(p: float) -> None:
        seen.append(p)
        if p > 0.5:
            raise KeyboardInterrupt  # a worker killed mid-task (not an error of the study)

    with pytest.raises(KeyboardInterrupt):
        generate_stimuli(db, storage, study["id"], on_progress=stop_halfway)
    db.rollback()
    made_first = db.scalar(select(func.count()).select_from(Stimulus))
    assert 0 < made_first
    seeds_first = dict(db.execute(select(Stimulus.id, Stimulus.seed)).all())
    made_now = generate_stimuli(db, storage, study["id"])
    total = db.scalar(select(func.count()).select_from(Stimulus))
    assert made_first + made_now == total
    assert seen == sorted(seen)  # progress only moves forward
    assert db.get(Study, study["id"]).state == "ready"
    assert all(db.get(Stimulus, i).seed == s for i, s in seeds_first.items())
    keys = [
        (s.purpose, s.run_id, s.source_image_id, s.epsilon) for s in db.scalars(select(Stimulus))
    ]
    assert len(keys) == len(set(keys))


def test_missing_checkpoint_marks_the_study_failed(client, auth, db, tiny_checkpoint):
    from backend.core.storage import get_storage
    from backend.models import Study
    from worker.study_tasks import generate_stimuli

    ds, _ = make_dataset(db, n=12)
    run_id = make_run(db, ds, tiny_checkpoint)
    study = ready_study(client, auth["researcher"], db, [run_id], generate=False)
    get_storage().delete(f"runs/{run_id}/final.pt")
    with pytest.raises(ValueError):
        generate_stimuli(db, get_storage(), study["id"])
    db.expire_all()
    row = db.get(Study, study["id"])
    assert row.state == "failed" and "final.pt is missing" in row.error
    detail = client.get(f"/api/studies/{study['id']}", headers=auth["researcher"]).json()
    assert detail["state"] == "failed" and detail["error"]


def test_generate_enqueues_the_task_on_the_real_broker(client, auth, db, tiny_checkpoint):
    ds, _ = make_dataset(db, n=12)
    run_id = make_run(db, ds, tiny_checkpoint)
    study = ready_study(client, auth["researcher"], db, [run_id], generate=False)
    from backend.core.config import get_settings

    queue = get_settings().training_queue
    r = redis.Redis.from_url(TEST_REDIS_URL)
    before = r.llen(queue)
    res = client.post(f"/api/studies/{study['id']}/generate", headers=auth["researcher"])
    assert res.status_code == 200 and res.json()["state"] == "generating"
    messages = r.lrange(queue, 0, -1)
    assert r.llen(queue) == before + 1
    assert b"worker.generate_stimuli" in messages[0] or any(
        b"worker.generate_stimuli" in m for m in messages
    )
    # a second start while generating is refused, nothing else is queued
    again = client.post(f"/api/studies/{study['id']}/generate", headers=auth["researcher"])
    assert again.status_code == 409
    assert r.llen(queue) == before + 1
    for m in r.lrange(queue, 0, -1):  # leave the shared test broker as it was
        if b"worker.generate_stimuli" in m:
            r.lrem(queue, 1, m)


def test_create_validation_names_the_field(client, auth, db, tiny_checkpoint):
    h = auth["researcher"]
    ds, image_ids = make_dataset(db, n=12)
    other, other_ids = make_dataset(db, n=4, name="other")
    run_id = make_run(db, ds, tiny_checkpoint)
    failed = make_run(db, ds, tiny_checkpoint, state="failed")
    base = {
        "name": "s",
        "run_ids": [run_id],
        "num_random_images": 12,
        "epsilons_255": [0, 4],
        "trials_per_condition": 1,
        "catch_trials": 1,
        "practice_trials": 1,
    }

    def post(**changes):
        return client.post("/api/studies", json={**base, **changes}, headers=h)

    cases = [
        ({"run_ids": []}, "run_ids"),
        ({"run_ids": [failed]}, "run_ids"),
        ({"run_ids": [999999]}, "run_ids"),
        ({"epsilons_255": [0, 300]}, "epsilons_255"),
        ({"epsilons_255": [4, 4]}, "epsilons_255"),
        ({"num_random_images": 500}, "num_random_images"),
        ({"num_random_images": None, "image_ids": other_ids}, "image_ids"),
        ({"trials_per_condition": 0}, "trials_per_condition"),
        ({"completion_url": "https://app.prolific.com/submissions/complete"}, "completion_url"),
        ({"completion_url": "javascript:alert(1)//{code}"}, "completion_url"),
        ({"exclusion": {"min_catch_accuracy": 2}}, "exclusion.min_catch_accuracy"),
        ({"name": "  "}, "name"),
    ]
    from backend.models import Study

    for changes, field in cases:
        r = post(**changes)
        assert r.status_code == 422, (changes, r.text)
        body = r.json()
        assert body["detail"].endswith(".")
        assert any(e["field"] == field for e in body["errors"]), (changes, body)
    assert db.scalar(select(func.count()).select_from(Study)) == 0  # nothing stored on refusal
    # too few images for the design: the message says how many are needed
    r = post(num_random_images=None, image_ids=image_ids[:5], epsilons_255=[0, 4, 8])
    assert r.status_code == 422 and "needs at least 6 images" in r.json()["detail"]
    ok = post(completion_url="https://app.prolific.com/submissions/complete?cc={code}")
    assert ok.status_code == 201, ok.text
    assert ok.json()["state"] == "draft" and ok.json()["link_path"].startswith("/s/")
    assert client.post(f"/api/studies/{ok.json()['id']}/open", headers=h).status_code == 409
