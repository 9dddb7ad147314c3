"""A study people can see: the integer display factor (its rule, validated on every answer,
stored and exported), the device check against the images as drawn, thresholds outside the
tested grid reported without a number, the model's robust accuracy measured at the study's
own epsilons by a real attack, and the researcher's stateless preview of the participant's
flow (nothing stored, nobody counted)."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from tests.backend import study_support
from tests.backend.study_support import make_dataset, make_run, ready_study

DEVICE = {"screen_width": 1920, "screen_height": 1080, "window_width": 1400, "window_height": 900,
          "device_pixel_ratio": 1.0, "user_agent": "pytest"}  # fmt: skip


@pytest.fixture()
def study(client, auth, db, tiny_checkpoint):
    ds, _ = make_dataset(db, n=12)
    run_id = make_run(db, ds, tiny_checkpoint)
    rules = {"same_answer_throughout": False, "min_catch_accuracy": 0}
    s = ready_study(client, auth["researcher"], db, [run_id], exclusion=rules)
    s["run_id"] = run_id
    return s


def session(client, study, pid: str) -> str:
    r = client.post(
        f"/api/participate/links/{study['link_token']}/sessions", json={"prolific_pid": pid}
    )
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    assert client.post(f"/api/participate/{token}/consent").status_code == 200
    assert client.post(f"/api/participate/{token}/device", json=DEVICE).json()["ok"]
    return token


def counted(client, auth, study) -> int:
    return client.get(f"/api/studies/{study['id']}", headers=auth["researcher"]).json()[
        "num_sessions"
    ]


# ---- the display factor --------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    side=st.integers(min_value=1, max_value=2048),
    dpr=st.sampled_from([0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.625, 3.0, 4.0]),
)
def test_display_scale_is_the_largest_integer_within_the_target(side, dpr):
    from backend.services.studies.participation import DISPLAY_TARGET_CSS, display_scale

    k = display_scale(side, side, dpr)
    assert isinstance(k, int) and k >= 1
    if k > 1:  # enlarged: within the target, and one more step would pass it
        assert side * k / dpr <= DISPLAY_TARGET_CSS + 1e-9
    assert side * (k + 1) / dpr > DISPLAY_TARGET_CSS


def test_display_scale_of_known_sizes():
    from backend.services.studies.participation import display_scale

    assert display_scale(28, 28, 1.0) == 9  # MNIST: 252 CSS px
    assert display_scale(28, 28, 2.0) == 18  # the same 252 CSS px in device pixels
    assert display_scale(16, 16, 1.0) == 16
    assert display_scale(32, 24, 1.0) == 8  # the larger side decides
    assert display_scale(224, 224, 1.0) == 1
    assert display_scale(400, 400, 2.0) == 1  # never shrunk
    assert display_scale(16, 16, 5e-324) == display_scale(16, 16, 0.25) == 4  # no browser's


def test_answers_carry_a_validated_display_scale_that_the_csv_exports(client, auth, db, study):
    from backend.models import Response, Trial

    info = client.get(f"/api/participate/links/{study['link_token']}").json()
    assert info["display_target"] == 256 and info["display_scale"] == 16
    token = session(client, study, "scale-1")
    trials = client.get(f"/api/participate/{token}/trials").json()["data"]
    first, second = trials[0]["id"], trials[1]["id"]
    url = f"/api/participate/{token}/trials/{first}/answer"
    for bad in (0, -3, 65, 2.5, "big", True):
        r = client.post(url, json={"answer": "left", "rt_ms": 600, "display_scale": bad})
        assert r.status_code == 422, (bad, r.text)
        assert "display_scale" in r.json()["detail"], r.json()
    assert db.scalar(select(func.count()).select_from(Response)) == 0
    r = client.post(url, json={"answer": "left", "rt_ms": 600, "display_scale": 16})
    assert r.status_code == 200, r.text
    r = client.post(
        f"/api/participate/{token}/trials/{second}/answer", json={"answer": "right", "rt_ms": 640}
    )
    assert r.status_code == 200, r.text  # an older page that does not say: stored as unknown
    db.expire_all()
    stored = dict(
        db.execute(
            select(Trial.public_id, Response.display_scale).join(
                Response, Response.trial_id == Trial.id
            )
        ).all()
    )
    assert stored == {first: 16, second: None}
    text = client.get(f"/api/studies/{study['id']}/trials.csv", headers=auth["researcher"]).text
    rows = {r["trial_id"]: r for r in csv.DictReader(io.StringIO(text))}
    assert rows[first]["display_scale"] == "16"
    assert rows[second]["display_scale"] == ""
    assert {r["display_scale"] for r in rows.values() if not r["answer"]} == {""}


def test_the_device_check_asks_for_a_window_that_fits_the_scaled_images(client, study):
    from backend.models import Study
    from backend.services.studies import participation as p

    token = client.post(
        f"/api/participate/links/{study['link_token']}/sessions", json={"prolific_pid": "small"}
    ).json()["token"]
    client.post(f"/api/participate/{token}/consent")
    info = client.get(f"/api/participate/links/{study['link_token']}").json()
    # two 16 px images drawn 16x: 256 CSS px each, with the page around them
    assert info["min_window_width"] >= 2 * 256 + p.WINDOW_MARGIN_W
    assert info["min_window_height"] >= 256 + p.WINDOW_MARGIN_H
    small = {**DEVICE, "window_width": info["min_window_width"] - 1}
    r = client.post(f"/api/participate/{token}/device", json=small)
    assert r.status_code == 200 and not r.json()["ok"] and r.json()["stage"] == "device"
    (problem,) = r.json()["problems"]
    assert f"at least {info['min_window_width']} x {info['min_window_height']} pixels" in problem
    fits = {**DEVICE, "window_width": info["min_window_width"]}
    assert client.post(f"/api/participate/{token}/device", json=fits).json()["ok"]
    # a study of larger images: the images as drawn decide, at the participant's pixel ratio
    big = Study(design="2afc", config={"image_size": [400, 400]})
    assert p.min_window(big, 1.0)[0] == 2 * 400 + p.WINDOW_MARGIN_W
    assert p.min_window(big, 2.0)[0] == max(p.MIN_WINDOW_W, 2 * 200 + p.WINDOW_MARGIN_W)
    tiny = {**DEVICE, "device_pixel_ratio": 5e-324}  # no browser's: taken as 0.25, no overflow
    assert "3320 x 1860" in p.device_problems(big, tiny)[0]
    assert p.device_problems(Study(design="yesno", config={}), tiny) == []
    problems = p.device_problems(big, {**DEVICE, "window_width": 900, "window_height": 700})
    assert problems and "920 x 660" in problems[0]
    assert not p.device_problems(big, {**DEVICE, "window_width": 920, "window_height": 660})


# ---- thresholds outside the grid -----------------------------------------------------------


def test_within_grid():
    from backend.services.studies.analysis import within_grid

    grid = [0.0, 4.0, 16.0]
    assert within_grid(7.5, grid) == (7.5, None)
    assert within_grid(4.0, grid) == (4.0, None) and within_grid(16.0, grid) == (16.0, None)
    assert within_grid(617.29, grid) == (None, "above")
    assert within_grid(math.inf, grid) == (None, "above")
    assert within_grid(None, grid) == (None, "above")  # never reached
    assert within_grid(0.3, grid) == (None, "below")  # 0 is no perturbed level
    assert within_grid(3.0, [0.0]) == (None, None)


def _answer_all(client, db, token, rule) -> None:
    from backend.models import Trial

    for t in client.get(f"/api/participate/{token}/trials").json()["data"]:
        trial = db.scalar(select(Trial).where(Trial.public_id == t["id"]))
        right = trial.correct_answer
        wrong = "left" if right == "right" else "right"
        answer = right if rule(trial) else wrong
        r = client.post(
            f"/api/participate/{token}/trials/{t['id']}/answer",
            json={"answer": answer, "rt_ms": 800, "display_scale": 16},
        )
        assert r.status_code == 200, r.text
    assert client.post(f"/api/participate/{token}/complete").status_code == 200


@pytest.mark.parametrize(
    ("rule", "beyond"),
    [
        # wrong whenever the image was changed: below chance everywhere, never reaches 75%
        (lambda t: t.epsilon == 0, "above"),
        # right on every trial, even the smallest perturbed level: below the grid
        (lambda t: True, "below"),
    ],
)
def test_thresholds_outside_the_grid_have_no_number(client, auth, db, study, rule, beyond):
    for i in range(3):
        _answer_all(client, db, session(client, study, f"{beyond}-{i}"), rule)
    res = study_support.analysed_results(client, auth["researcher"], study["id"])
    assert res["participants"]["included"] == 3, res["excluded"]
    (run,) = res["runs"]
    fit = run["fit"]
    assert fit is not None
    assert fit["threshold_255"] is None and fit["threshold_beyond"] == beyond, fit
    assert (fit["lowest_epsilon_255"], fit["highest_epsilon_255"]) == (4, 16)
    # interval bounds outside the grid carry no number either
    for bound in ("threshold_ci_low", "threshold_ci_high"):
        value = fit[bound]
        assert value is None or 4 <= value <= 16, fit
        if value is None:
            assert fit[f"{bound}_beyond"] in ("above", "below"), fit


# ---- the model's robust accuracy at the study's epsilons -----------------------------------


def _check_curve(points, epsilons, n_images):
    assert [p["epsilon_255"] for p in points] == sorted({0.0, *epsilons})
    accs = [p["accuracy"] for p in points]
    assert all(0 <= a <= 1 for a in accs), accs
    assert all(b <= a + 1e-9 for a, b in zip(accs, accs[1:], strict=False)), accs
    for p in points:
        assert p["n"] == n_images and p["n_robust"] == round(p["accuracy"] * n_images)


def test_model_accuracy_is_measured_at_the_study_epsilons(client, auth, db, tiny_checkpoint):
    from backend.core.storage import get_storage
    from backend.models import Image, Study
    from backend.services.studies import stimuli
    from worker.sipat import load_model_from_checkpoint
    from worker.sipat.stimuli import robust_accuracy_at, to_chw
    from worker.study_tasks import generate_stimuli

    ds, _ = make_dataset(db, n=24, seed=5)
    runs = [make_run(db, ds, tiny_checkpoint, name=n) for n in ("one", "two")]
    eps = [0.5, 2, 6, 24]  # none of them the runs' own evaluation epsilons (2/255 and 8/255 only)
    attack = {"steps": 8, "alpha_ratio": 0.3}
    s = ready_study(client, auth["researcher"], db, runs, num_random_images=24,
                    epsilons_255=eps, design="yesno", attack=attack)  # fmt: skip
    study = db.get(Study, s["id"])
    table = study.config["model_accuracy"]
    n_main = len(study.config["images"]["main"])
    assert table["n_images"] == n_main and n_main > 0
    assert (table["steps"], table["restarts"], table["attack"]) == (8, 2, "pgd-linf")
    assert [e["run_id"] for e in table["runs"]] == runs
    res = study_support.analysed_results(client, auth["researcher"], s["id"])
    for run in res["runs"]:
        model = run["model_accuracy"]
        assert model["n_images"] == n_main and model["steps"] == 8
        _check_curve(model["points"], eps, n_main)
        # every human point has its model point
        model_eps = {p["epsilon_255"] for p in model["points"]}
        assert {p["epsilon_255"] for p in run["points"]} <= model_eps
        accs = [p["accuracy"] for p in model["points"]]
        # a real attack: 24 grey levels fool the small model on some images it gets right
        assert accs[0] > 0.5 and accs[-1] < accs[0], accs
    # the numbers are the attack's: measured again independently, they agree
    images = [db.get(Image, i) for i in study.config["images"]["main"]]
    model = load_model_from_checkpoint(tiny_checkpoint / "final.pt")
    storage = get_storage()
    batch = np.stack([to_chw(stimuli.source_pixels(storage, im, 3, 16)) for im in images])
    labels = [stimuli.model_label(im, list(study_support.CLASSES)) for im in images]
    again = robust_accuracy_at(model, batch, labels, stimuli.model_accuracy_epsilons(study),
                               steps=8, alpha_ratio=0.3, restarts=2,
                               seed=int(study.config["seed"]) + runs[0])  # fmt: skip
    assert again == table["runs"][0]["points"]
    # a redelivered task measures nothing again
    before = dict(study.config)
    generate_stimuli(db, storage, s["id"])
    db.refresh(study)
    assert study.config["model_accuracy"] == before["model_accuracy"]


# ---- the researcher's preview of the participant's flow ------------------------------------


def test_preview_is_stateless_and_counts_nobody(client, auth, db, tiny_checkpoint):
    from backend.models import ParticipantSession, Response, Trial

    ds, _ = make_dataset(db, n=12)
    run_id = make_run(db, ds, tiny_checkpoint)
    draft = ready_study(client, auth["researcher"], db, [run_id], generate=False, name="draft")
    r = client.get(f"/api/studies/{draft['id']}/preview-session", headers=auth["researcher"])
    assert r.status_code == 409 and "not made yet" in r.json()["detail"]
    s = ready_study(client, auth["researcher"], db, [run_id], open_=False)  # ready, not open
    h = auth["researcher"]

    def rows() -> tuple[int, int, int]:
        return tuple(
            db.scalar(select(func.count()).select_from(m))
            for m in (ParticipantSession, Trial, Response)
        )

    before = rows()
    r = client.get(f"/api/studies/{s['id']}/preview-session", headers=h)
    assert r.status_code == 200, r.text
    pv = r.json()
    cfg = client.get(f"/api/studies/{s['id']}", headers=h).json()["config"]
    assert pv["practice_total"] == cfg["practice_trials"]
    assert pv["main_total"] == len(cfg["cells"]) + cfg["catch_trials"]
    assert len(pv["trials"]) == pv["practice_total"] + pv["main_total"]
    assert [t["phase"] for t in pv["trials"][: pv["practice_total"]]] == ["practice"] * 2
    for t in pv["trials"]:
        assert len(t["images"]) == 2 and t["correct_answer"] in ("left", "right")
        for url in t["images"]:
            img = client.get(url, headers=h)
            assert img.status_code == 200 and img.headers["content-type"] == "image/png"
    assert pv["info"]["display_scale"] == 16
    r = client.post(f"/api/studies/{s['id']}/preview-device", headers=h, json=DEVICE)
    assert r.json() == {"ok": True, "problems": [], "stage": "preview"}
    r = client.post(
        f"/api/studies/{s['id']}/preview-device", headers=h, json={**DEVICE, "window_width": 500}
    )
    assert not r.json()["ok"] and "at least" in r.json()["problems"][0]
    db.expire_all()
    assert rows() == before
    assert client.get(f"/api/studies/{s['id']}", headers=h).json()["num_sessions"] == 0
    # only researchers may preview: it names the right answers
    r = client.get(f"/api/studies/{s['id']}/preview-session", headers=auth["annotator"])
    assert r.status_code == 403


def test_no_participant_is_counted_before_consent(client, auth, study):
    link = study["link_token"]
    assert counted(client, auth, study) == 0
    tokens = []
    for pid in ("look-1", None, None):
        r = client.post(f"/api/participate/links/{link}/sessions", json={"prolific_pid": pid})
        assert r.status_code == 201
        tokens.append(r.json()["token"])
    res = client.get(f"/api/studies/{study['id']}/results", headers=auth["researcher"]).json()
    assert counted(client, auth, study) == 0 and res["participants"]["total"] == 0
    assert client.post(f"/api/participate/{tokens[1]}/consent").status_code == 200
    assert counted(client, auth, study) == 1
    res = client.get(f"/api/studies/{study['id']}/results", headers=auth["researcher"]).json()
    assert res["participants"]["total"] == 1
