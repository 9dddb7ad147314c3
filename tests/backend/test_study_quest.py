"""QUEST+ placement (issue 25, item 5): the staircase converges on a simulated observer's known
threshold; through the API the next level is chosen on the server after each stored answer (as
questplus itself chooses it from the same answers), the posterior survives a reload, the
stopping rules end a run, and the posterior's summary is stored per trial and exported.

Real checkpoints, real PGD, real PostgreSQL (tests/backend/study_support.py); the leak test of
the adaptive mode is in test_study_leaks.py."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest
from sqlalchemy import select

from tests.backend.study_support import make_dataset, make_run, ready_study

DEVICE = {"screen_width": 1920, "screen_height": 1080, "window_width": 1400, "window_height": 900,
          "device_pixel_ratio": 1.0, "user_agent": "pytest"}  # fmt: skip
# a small QUEST+ study: a 20-level ladder over 1-16 grey levels, 6 trials per run
QUEST = {"levels": 20, "ladder_min_255": 1.0, "ladder_max_255": 16.0, "max_trials": 6}


def p_correct(eps_255: float, threshold: float, beta: float, lapse: float) -> float:
    """A 2AFC Weibull observer, halfway up (75 % at no lapse) at `threshold`."""
    return 0.5 + (0.5 - lapse) * (1 - math.exp(-math.log(2) * (eps_255 / threshold) ** beta))


def test_quest_converges_on_a_simulated_observers_threshold():
    from backend.services.studies import adaptive

    levels = tuple(adaptive.ladder({"ladder_min_255": 0.5, "ladder_max_255": 24, "levels": 25}))
    assert len(levels) == 25 and levels[0] == 0.5 and levels[-1] == 24
    ratios = np.diff(np.log(levels))
    assert np.allclose(ratios, ratios[0], atol=1e-3)  # log-spaced
    rng = np.random.default_rng(11)
    errors, covered = [], 0
    for _ in range(8):
        threshold = math.exp(rng.uniform(math.log(2), math.log(12)))
        beta = rng.uniform(1.5, 4.0)
        q = adaptive.staircase(levels)
        shown = []
        for _ in range(40):
            e = adaptive.next_level(q, levels)
            assert e in levels
            shown.append(e)
            adaptive.update(q, levels, e, rng.random() < p_correct(e, threshold, beta, 0.02))
        s = adaptive.summary(q)
        errors.append(math.log(s["threshold_255"] / threshold))
        covered += s["ci_low_255"] <= threshold <= s["ci_high_255"]
        # the staircase spends its trials near the threshold, not at the ladder's ends
        assert np.median(np.abs(np.log(np.array(shown[10:]) / threshold))) < 1.0
    rms = math.sqrt(float(np.mean(np.square(errors))))
    assert rms < 0.3, errors  # within about 35 % of the true threshold after 40 trials
    assert covered >= 6, errors


def _session(client, study, pid):
    r = client.post(f"/api/participate/links/{study['link_token']}/sessions",
                    json={"prolific_pid": pid})  # fmt: skip
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    assert client.post(f"/api/participate/{token}/consent").status_code == 200
    assert client.post(f"/api/participate/{token}/device", json=DEVICE).json()["ok"]
    return token


def _trial_row(db, public_id):
    from backend.models import Trial

    db.expire_all()
    return db.scalar(select(Trial).where(Trial.public_id == public_id))


def _observer_answer(db, trial_public_id, rng, threshold=4.0):
    """The answer of a Weibull observer (threshold 4/255, shape 3) to the trial as stored."""
    t = _trial_row(db, trial_public_id)
    if t.phase == "practice":
        return t.correct_answer
    right = rng.random() < p_correct(t.epsilon * 255, threshold, 3.0, 0.0)
    wrong = "right" if t.correct_answer == "left" else "left"
    return t.correct_answer if right else wrong


@pytest.fixture()
def quest_study(client, auth, db, tiny_checkpoint):
    ds, _ = make_dataset(db, n=12)
    run_id = make_run(db, ds, tiny_checkpoint)
    study = ready_study(client, auth["researcher"], db, [run_id], num_random_images=12,
                        placement="quest", quest=QUEST, epsilons_255=[1, 2],
                        catch_trials=1, practice_trials=2)  # fmt: skip
    study["run_id"] = run_id
    return study


def test_the_next_level_is_chosen_after_each_answer_and_a_reload_keeps_the_posterior(
    client, auth, db, quest_study
):
    from backend.models import QuestTrack, Stimulus
    from backend.services.studies import adaptive

    study = quest_study
    cfg = study["config"]
    levels = tuple(adaptive.ladder(QUEST))
    assert cfg["placement"] == "quest" and tuple(cfg["epsilons_255"]) == levels
    assert 0 not in cfg["epsilons_255"]  # epsilon 0 is no level of the ladder
    # every image of the main pool has a stimulus at every ladder level
    main = db.scalars(select(Stimulus).where(Stimulus.study_id == study["id"],
                                             Stimulus.purpose == "main")).all()  # fmt: skip
    assert len(main) == len(cfg["images"]["main"]) * len(levels)

    token = _session(client, study, "PID-quest")
    rng = np.random.default_rng(5)
    replay = adaptive.staircase(levels)  # questplus fed the same answers, here
    answered_main = 0
    seen: list[str] = []
    while True:
        pending = client.get(f"/api/participate/{token}/trials").json()["data"]
        if not pending:
            break
        # at most one main trial is listed: the next one's level is not chosen yet
        ids = [t["id"] for t in pending]
        stored = [_trial_row(db, i) for i in ids]
        assert sum(t.phase == "main" for t in stored) <= 1
        trial, row = pending[0], stored[0]
        if row.phase == "main":
            # the level shown is the one questplus chooses from the answers so far
            assert row.epsilon * 255 == pytest.approx(adaptive.next_level(replay, levels))
        if answered_main == 3 and row.phase == "main":
            # a reload mid-study: the session and its next trial are the same, the posterior
            # is the stored one (not the prior again)
            again = client.get(f"/api/participate/{token}/trials").json()["data"]
            assert again[0] == trial
            state = client.get(f"/api/participate/{token}").json()
            assert state["main_done"] >= 3
            db.expire_all()
            track = db.scalar(select(QuestTrack))
            assert track.answered == 3
            assert np.allclose(track.posterior, np.asarray(replay.posterior.values).ravel())
            assert not np.allclose(track.posterior, track.posterior[0])
        answer = _observer_answer(db, trial["id"], rng)
        r = client.post(f"/api/participate/{token}/trials/{trial['id']}/answer",
                        json={"answer": answer, "rt_ms": 700})  # fmt: skip
        assert r.status_code == 200, r.text
        seen.append(trial["id"])
        if row.phase == "main":
            adaptive.update(replay, levels, row.epsilon * 255, answer == row.correct_answer)
            answered_main += 1
            stored_post = _trial_row(db, trial["id"]).posterior
            assert stored_post == {**adaptive.summary(replay), "answered": answered_main,
                                   "next_epsilon_255": stored_post["next_epsilon_255"],
                                   "stopped": stored_post["stopped"]}  # fmt: skip
    # the trial-count rule: max_trials main trials, the last one says why the run stopped
    assert answered_main == QUEST["max_trials"]
    last = _trial_row(db, seen[-1] if _trial_row(db, seen[-1]).phase == "main" else seen[-2])
    done = client.post(f"/api/participate/{token}/complete")
    assert done.status_code == 200, done.text

    # the posterior's summary is exported with every main trial, CSV and JSON
    h = auth["researcher"]
    rows = list(csv.DictReader(io.StringIO(
        client.get(f"/api/studies/{study['id']}/trials.csv", headers=h).text)))  # fmt: skip
    mains = [r for r in rows if r["phase"] == "main"]
    assert len(mains) == QUEST["max_trials"]
    assert all(float(r["quest_threshold_255"]) > 0 for r in mains)
    assert all(r["quest_threshold_255"] == "" for r in rows if r["phase"] != "main")
    assert mains[-1]["quest_stopped"] == "trial count" and mains[-1]["quest_next_epsilon_255"] == ""
    assert all(float(r["epsilon_255"]) in levels for r in mains)
    js = client.get(f"/api/studies/{study['id']}/trials.json", headers=h)
    assert js.status_code == 200 and js.json()["placement"] == "quest"
    final = [r for r in js.json()["data"] if r["phase"] == "main"][-1]["posterior"]
    assert final == last.posterior and final["stopped"] == "trial count"
    assert final["ci_low_255"] <= final["threshold_255"] <= final["ci_high_255"]


def test_a_run_stops_once_its_posterior_is_narrow_enough(client, auth, db, tiny_checkpoint):
    from backend.models import ParticipantSession, Trial

    ds, _ = make_dataset(db, n=12)
    run_id = make_run(db, ds, tiny_checkpoint)
    # a ratio no posterior misses: the run stops at min_trials, the rest are removed
    rule = {**QUEST, "stop_ci_ratio": 100.0, "min_trials": 3}
    study = ready_study(client, auth["researcher"], db, [run_id], num_random_images=12,
                        placement="quest", quest=rule, catch_trials=1,
                        practice_trials=2)  # fmt: skip
    token = _session(client, study, "PID-width")
    assert client.get(f"/api/participate/{token}").json()["main_total"] == 6 + 1
    rng = np.random.default_rng(1)
    while pending := client.get(f"/api/participate/{token}/trials").json()["data"]:
        t = pending[0]
        body = {"answer": _observer_answer(db, t["id"], rng), "rt_ms": 600}
        r = client.post(f"/api/participate/{token}/trials/{t['id']}/answer", json=body)
        assert r.status_code == 200, r.text
    state = client.get(f"/api/participate/{token}").json()
    assert state["stage"] == "debrief" and state["main_total"] == state["main_done"] == 3 + 1
    db.expire_all()
    session = db.scalar(select(ParticipantSession).where(ParticipantSession.token == token))
    trials = db.scalars(select(Trial).where(Trial.session_id == session.id)
                        .order_by(Trial.index)).all()  # fmt: skip
    assert [t.index for t in trials] == list(range(len(trials)))  # numbered without a gap
    mains = [t for t in trials if t.phase == "main"]
    assert len(mains) == 3 and mains[-1].posterior["stopped"] == "posterior width"
    assert client.post(f"/api/participate/{token}/complete").status_code == 200


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"design": "yesno"}, "2AFC studies only"),
        ({"quest": {"ladder_max_255": 40}}, "below the catch epsilon"),
        ({"quest": {"levels": 40}}, "levels"),
        ({"placement": "constant", "quest": {}}, "only with placement quest"),
    ],
)
def test_quest_settings_that_cannot_work_are_refused_in_words(client, auth, extra, words):
    body = {"name": "q", "run_ids": [1], "num_random_images": 12, "placement": "quest", **extra}
    r = client.post("/api/studies", headers=auth["researcher"], json=body)
    assert r.status_code == 422, r.text
    assert words in r.text


def test_a_quest_study_needs_an_image_per_trial(client, auth, db, tiny_checkpoint):
    ds, _ = make_dataset(db, n=12)
    run_id = make_run(db, ds, tiny_checkpoint)
    body = {"name": "q", "run_ids": [run_id], "num_random_images": 12, "placement": "quest",
            "quest": {**QUEST, "max_trials": 40}}  # fmt: skip
    r = client.post("/api/studies", headers=auth["researcher"], json=body)
    assert r.status_code == 422, r.text
    assert "needs at least 45 images (40 main" in r.json()["detail"]
