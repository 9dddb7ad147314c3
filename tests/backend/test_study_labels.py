"""Label studies (issue 26): stimuli made by the real worker with the library's AutoAttack,
every kept adversarial image re-checked to fool the model after 8-bit quantisation, the
participant's answers by class index or "can't tell", and the human-validated robust accuracy
on a constructed case with a known answer (docs/studies.md, "Label studies")."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sqlalchemy import select

from tests.backend.study_support import SIZE, make_dataset, make_run, ready_study

DEVICE = {"screen_width": 1920, "screen_height": 1080, "window_width": 1400, "window_height": 900,
          "device_pixel_ratio": 1.0, "user_agent": "pytest"}  # fmt: skip


def label_body(**extra) -> dict:
    body = {
        "design": "label",
        "num_random_images": None,
        "images_per_class": 4,
        "epsilons_255": [16, 32],
        "practice_trials": 2,
        "catch_trials": 1,
        "exclusion": {"min_catch_accuracy": 0.0, "same_answer_throughout": False},
    }
    body.update(extra)
    return body


def session(client, study, pid: str) -> str:
    r = client.post(f"/api/participate/links/{study['link_token']}/sessions",
                    json={"prolific_pid": pid})  # fmt: skip
    assert r.status_code in (200, 201), r.text
    token = r.json()["token"]
    assert client.post(f"/api/participate/{token}/consent").status_code == 200
    assert client.post(f"/api/participate/{token}/device", json=DEVICE).json()["ok"]
    return token


def answer(client, token: str, trial_id: str, value: str):
    return client.post(f"/api/participate/{token}/trials/{trial_id}/answer",
                       json={"answer": value, "rt_ms": 900.0})  # fmt: skip


def test_label_stimuli_fool_the_model_after_quantisation_and_a_participant_takes_part(
    client, auth, db, tiny_checkpoint
):
    from backend.core.storage import get_storage
    from backend.models import Stimulus, Study, Trial
    from backend.services.studies.common import png_pixels
    from worker.sipat import load_model_from_checkpoint

    h = auth["researcher"]
    ds, _ = make_dataset(db, n=14)
    run_id = make_run(db, ds, tiny_checkpoint)
    # a label study needs images per class, and enough classes' images
    named = {"name": "x", "run_ids": [run_id]}
    r = client.post("/api/studies", headers=h, json={**named, **label_body(images_per_class=None)})
    assert r.status_code == 422
    r = client.post("/api/studies", headers=h, json={**named, **label_body(images_per_class=8)})
    assert r.status_code == 422 and "test images" in r.text

    study = ready_study(client, h, db, [run_id], name="labels", **label_body())
    assert study["state"] == "open", study
    row = db.get(Study, study["id"])
    cfg = row.config
    pool = cfg["images"]["main"]
    assert len(pool) == 8
    model = load_model_from_checkpoint(tiny_checkpoint / "final.pt", "cpu").eval()
    storage = get_storage()
    (table,) = cfg["label_model"]["runs"]
    assert [p["epsilon_255"] for p in table["points"]] == [16, 32]
    for p in table["points"]:
        # every pool image has exactly one outcome, and the counts add up
        assert set(p["outcomes"]) == {str(i) for i in pool} and p["n"] == 8
        assert sum(p["counts"].values()) == 8
        adv = {
            s.source_image_id: s
            for s in db.scalars(
                select(Stimulus).where(
                    Stimulus.study_id == row.id,
                    Stimulus.run_id == run_id,
                    Stimulus.epsilon == p["epsilon_255"] / 255,
                )
            )
        }
        # a stimulus is kept exactly for the images whose outcome is "fooled" ...
        fooled = {int(i) for i, o in p["outcomes"].items() if o == "fooled"}
        assert set(adv) == fooled
        for img, s in adv.items():
            assert s.attack == "autoattack" and s.purpose == "main"
            pixels = png_pixels(storage.get_bytes(s.storage_key))
            clean = png_pixels(storage.get_bytes(
                db.scalar(select(Stimulus.storage_key).where(
                    Stimulus.study_id == row.id, Stimulus.purpose == "main",
                    Stimulus.source_image_id == img, Stimulus.run_id.is_(None)))))  # fmt: skip
            # ... within the budget in 8 bits, and still misclassified as stored
            diff = np.abs(pixels.astype(int) - clean.astype(int)).max()
            assert 0 < diff <= p["epsilon_255"]
            x = torch.from_numpy(pixels.transpose(2, 0, 1).copy()).float().div(255)[None]
            with torch.no_grad():
                assert int(model(x).argmax(1)) != cfg["true_classes"][str(img)]
    # the standard-trained model is fooled at 32/255 on every image it classifies right
    top = table["points"][1]["counts"]
    assert top["robust"] == 0 and top["fooled"] + top["dropped"] == 8 - top["wrong"]

    info = client.get(f"/api/participate/links/{study['link_token']}").json()
    assert info["design"] == "label" and info["classes"] == ["a", "b"]
    token = session(client, study, "PID-label")
    assert client.get(f"/api/participate/{token}/example").status_code == 404
    trials = client.get(f"/api/participate/{token}/trials").json()["data"]
    assert len(trials) == 2 + 8 + len(cfg["images"]["catch"])
    assert all(len(t["images"]) == 1 for t in trials)
    # every main image once per participant
    shown = [db.scalar(select(Trial).where(Trial.public_id == t["id"])) for t in trials]
    sources = [db.get(Stimulus, t.left_stimulus_id).source_image_id for t in shown]
    assert len(set(sources)) == len(sources)
    # answers: a class index or "none"; anything else is refused with a sentence
    assert answer(client, token, trials[0]["id"], "7").status_code in (400, 422)
    assert answer(client, token, trials[0]["id"], "maybe").status_code == 422
    first = answer(client, token, trials[0]["id"], shown[0].correct_answer).json()
    assert first["feedback"] is True  # practice has feedback
    # a reload: the state and the open trials pick up where the participant stopped
    state = client.get(f"/api/participate/{token}").json()
    assert state["practice_done"] == 1
    rest = client.get(f"/api/participate/{token}/trials").json()["data"]
    assert [t["id"] for t in rest] == [t["id"] for t in trials[1:]]
    for k, t in enumerate(rest):
        out = answer(client, token, t["id"], "none" if k % 3 == 0 else "1").json()
        assert out["stored"] and (out["feedback"] is None) == (t["phase"] == "main")
    done = client.post(f"/api/participate/{token}/complete").json()
    assert done["completion_code"]


@pytest.fixture()
def constructed(client, auth, db, tiny_checkpoint):
    """A label study whose model outcomes are set by hand at one epsilon (8/255): of 10 pool
    images the model gets 2 wrong clean, 4 survive the attack, 4 are fooled (stimuli: the
    clean pixels, stored as adversarial ones); open, with no worker run."""
    from backend.core.storage import get_storage
    from backend.models import Study
    from backend.services.studies import labels
    from backend.services.studies.common import stored_png, stored_png_size

    h = auth["researcher"]
    ds, _ = make_dataset(db, n=14)
    run_id = make_run(db, ds, tiny_checkpoint)
    body = label_body(images_per_class=5, epsilons_255=[8], practice_trials=1, catch_trials=1)
    r = client.post("/api/studies", headers=h, json={"name": "known", "run_ids": [run_id], **body})
    assert r.status_code == 201, r.text
    study = db.get(Study, r.json()["id"])
    cfg = study.config
    pool = cfg["images"]["main"]
    assert len(pool) == 10
    outcomes = dict(zip([str(i) for i in pool], ["wrong"] * 2 + ["robust"] * 4 + ["fooled"] * 4,
                        strict=True))  # fmt: skip
    png = stored_png(np.full((SIZE, SIZE, 3), 128, np.uint8))
    storage = get_storage()
    for purpose in ("main", "practice", "catch"):
        for img in cfg["images"][purpose]:
            labels.store_label_stimulus(db, storage, study, (purpose, None, img, 0.0), png,
                                        attack="none", seed=0)  # fmt: skip
    fooled = [int(i) for i, o in outcomes.items() if o == "fooled"]
    for img in fooled:
        labels.store_label_stimulus(db, storage, study, ("main", run_id, img, 8.0), png,
                                    attack="autoattack", seed=0)  # fmt: skip
    db.commit()
    labels.record_model_outcomes(db, study, run_id, [{"epsilon_255": 8.0, "outcomes": outcomes}])
    study.config = {**study.config, "catch_dropped": 0, "image_size": [SIZE, SIZE],
                    "stimulus_bytes": stored_png_size(SIZE, SIZE, 3)}  # fmt: skip
    study.state = "open"
    db.commit()
    return {"id": study.id, "link_token": study.link_token, "run_id": run_id, "fooled": fooled}


def test_human_validated_robust_accuracy_of_a_constructed_case(client, auth, db, constructed):
    """People name the true class of two of the four fooled images and another class on the
    other two: the attack fooled the model, not people, on half of its successes, so
    HVRA = (4 robust + 4 fooled x (1 - 1/2)) / 10 = 0.6 (AutoAttack alone: 0.4)."""
    from backend.models import Stimulus, Trial
    from tests.backend.study_support import analysed_results

    still_right = set(constructed["fooled"][:2])
    for pid in ("P1", "P2", "P3", "P4"):
        token = session(client, constructed, pid)
        for t in client.get(f"/api/participate/{token}/trials").json()["data"]:
            trial = db.scalar(select(Trial).where(Trial.public_id == t["id"]))
            stim = db.get(Stimulus, trial.left_stimulus_id)
            truth = trial.correct_answer
            other = "1" if truth == "0" else "0"
            right = stim.run_id is None or stim.source_image_id in still_right
            assert answer(client, token, t["id"], truth if right else other).status_code == 200
        assert client.post(f"/api/participate/{token}/complete").status_code == 200

    res = analysed_results(client, auth["researcher"], constructed["id"])
    assert res["design"] == "label" and res["participants"]["included"] == 4
    assert res["human_accuracy_clean"] == 1.0
    (run,) = res["runs"]
    (point,) = run["points"]
    assert point["model"] == {"wrong": 2, "robust": 4, "fooled": 4, "dropped": 0}
    assert point["model_robust_accuracy"] == pytest.approx(0.4)
    assert point["model_errors_people_right"] == pytest.approx(0.5)
    assert point["human_validated_robust_accuracy"] == pytest.approx(0.6)
    low, high = point["human_validated_robust_accuracy_ci"]
    # the interval lies between "people agree with every attack" and "with none"
    assert 0.4 - 1e-9 <= low <= 0.6 <= high <= 0.8 + 1e-9

    r = client.get(f"/api/runs/{constructed['run_id']}/results", headers=auth["researcher"])
    assert r.status_code == 200, r.text
    (entry,) = r.json()["human_validated_robust_accuracy"]
    assert entry["study_id"] == constructed["id"] and entry["epsilon_255"] == 8.0
    assert entry["value"] == pytest.approx(0.6) and entry["ci"] == [low, high]
    assert entry["autoattack_robust_accuracy"] == pytest.approx(0.4)
    assert client.get("/api/runs/999999/results", headers=auth["researcher"]).status_code == 404
    # compare's groups carry the same figure beside the run's own
    params = {"by": "method", "ids": str(constructed["run_id"])}
    r = client.get("/api/runs/groups", headers=auth["researcher"], params=params)
    (group,) = r.json()["groups"]
    held = group["metrics"]["human_validated_robust_accuracy@8"]
    assert held["mean"] == pytest.approx(0.6) and held["n"] == 1


def test_hvra_formula_edges():
    from backend.services.studies.labels import human_validated_robust_accuracy as hvra

    counts = {"wrong": 1, "robust": 2, "fooled": 3, "dropped": 4}
    # people name the true class on every fooled image: AutoAttack's figure stands
    assert hvra(counts, [1.0, 1.0]) == pytest.approx(0.2)
    # on none: every fooled image counts as right; clean errors and dropped ones stay errors
    assert hvra(counts, [0.0]) == pytest.approx(0.5)
    assert hvra(counts, []) is None
    assert hvra({"robust": 0}, []) is None
