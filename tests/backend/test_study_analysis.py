"""Analysis: Wilson intervals and d' against hand-computed values, threshold recovery from
simulated observers with a known Weibull curve, and the results/CSV of a study answered through
the real participant API."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest
from scipy.stats import norm

from backend.services import psychometrics as ps
from tests.backend.study_support import make_dataset, make_run, ready_study


def test_wilson_matches_hand_values():
    lo, hi = ps.wilson_interval(8, 10)
    # Wilson (1927): centre (p + z^2/2n) / (1 + z^2/n),
    # half-width z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n)
    z = 1.959963984540054
    c = (0.8 + z * z / 20) / (1 + z * z / 10)
    h = z * math.sqrt(0.8 * 0.2 / 10 + z * z / 400) / (1 + z * z / 10)
    assert lo == pytest.approx(c - h) and hi == pytest.approx(c + h)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    assert ps.wilson_interval(0, 10)[0] == 0.0
    assert ps.wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert ps.wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize(
    ("hits", "n_s", "fa", "n_n"),
    [(15, 20, 5, 20), (20, 20, 0, 20), (0, 10, 10, 10), (7, 7, 3, 9), (0, 0, 0, 0)],
)
def test_d_prime_log_linear_matches_hand_values(hits, n_s, fa, n_n):
    d = ps.d_prime(hits, n_s, fa, n_n)
    h = (hits + 0.5) / (n_s + 1)
    f = (fa + 0.5) / (n_n + 1)
    assert d.hit_rate == pytest.approx(h) and d.false_alarm_rate == pytest.approx(f)
    assert d.d_prime == pytest.approx(norm.ppf(h) - norm.ppf(f))
    assert math.isfinite(d.d_prime) and d.ci_low < d.d_prime < d.ci_high


def test_d_prime_known_numbers():
    # 20/20 hits, 0/20 false alarms: H = 20.5/21, F = 0.5/21 -> d' = 2 * z(20.5/21) = 3.9621
    assert ps.d_prime(20, 20, 0, 20).d_prime == pytest.approx(3.9621, abs=1e-3)
    # 15/20 hits, 5/20 false alarms: H = 15.5/21 = .7381, F = 5.5/21 = .2619 -> d' = 1.2755
    assert ps.d_prime(15, 20, 5, 20).d_prime == pytest.approx(1.2755, abs=1e-3)
    # chance: equal rates give 0
    assert ps.d_prime(5, 10, 5, 10).d_prime == pytest.approx(0.0)


def _simulate(seed, n_participants=30, trials=12, alpha=4.0, beta=2.0, lapse=0.02, guess=0.5):
    rng = np.random.default_rng(seed)
    levels = [0.0, 1.0, 2.0, 4.0, 8.0, 16.0]
    units = []
    for _ in range(n_participants):
        u = {}
        for x in levels:
            p = float(ps.weibull_p(np.array([x]), alpha, beta, guess, lapse)[0])
            u[x] = (int(rng.binomial(trials, p)), trials)
        units.append(u)
    return units


@pytest.mark.parametrize("seed", [1, 2])
def test_2afc_threshold_is_recovered_within_its_bootstrap_interval(seed):
    alpha, beta, lapse = 4.0, 2.0, 0.02
    truth = ps._threshold(alpha, beta, 0.5, lapse, 0.75)
    res = ps.bootstrap_threshold(_simulate(seed, alpha=alpha, beta=beta, lapse=lapse),
                                 guess=0.5, criterion=0.75, n_boot=100, seed=seed)  # fmt: skip
    assert res.fit is not None and res.ci_low is not None and res.ci_high is not None
    assert res.ci_low <= truth <= res.ci_high, (res.ci_low, truth, res.ci_high)
    assert res.fit.threshold == pytest.approx(truth, rel=0.25)
    assert res.ci_high - res.ci_low < truth  # informative, not a vacuous interval
    # seeded: the same data give the same interval
    again = ps.bootstrap_threshold(_simulate(seed, alpha=alpha, beta=beta, lapse=lapse),
                                   guess=0.5, criterion=0.75, n_boot=100, seed=seed)  # fmt: skip
    assert (again.ci_low, again.ci_high) == (res.ci_low, res.ci_high)


def test_yes_no_fit_recovers_the_false_alarm_rate_and_threshold():
    units = _simulate(7, n_participants=30, trials=20, alpha=3.0, beta=2.5, lapse=0.01, guess=0.1)
    res = ps.bootstrap_threshold(units, guess=None, criterion=None, n_boot=100, seed=7)
    truth = ps._threshold(3.0, 2.5, 0.1, 0.01, 0.1 + 0.5 * (1 - 0.1 - 0.01))
    assert res.fit.guess == pytest.approx(0.1, abs=0.04)
    assert res.ci_low <= truth <= res.ci_high


def test_results_and_csv_of_answered_sessions(client, auth, db, tiny_checkpoint):
    from backend.models import Trial

    ds, _ = make_dataset(db, n=14)
    run_id = make_run(db, ds, tiny_checkpoint, name="std")
    study = ready_study(client, auth["researcher"], db, [run_id], num_random_images=14,
                        exclusion={"min_catch_accuracy": 1.0, "too_fast_ms": 100,
                                   "max_too_fast_fraction": 0.5,
                                   "same_answer_throughout": False})  # fmt: skip
    link = study["link_token"]
    device = {"screen_width": 1920, "screen_height": 1080, "window_width": 1400,
              "window_height": 900, "device_pixel_ratio": 1.0}  # fmt: skip
    behaviours = ["perfect", "perfect", "perfect", "always_wrong", "fast", "perfect_but_unfinished"]
    for i, how in enumerate(behaviours):
        tok = client.post(
            f"/api/participate/links/{link}/sessions", json={"prolific_pid": f"p{i}"}
        ).json()["token"]
        client.post(f"/api/participate/{tok}/consent")
        client.post(f"/api/participate/{tok}/device", json=device)
        pending = client.get(f"/api/participate/{tok}/trials").json()["data"]
        for k, t in enumerate(pending):
            trial = db.query(Trial).filter(Trial.public_id == t["id"]).one()
            wrong = "left" if trial.correct_answer == "right" else "right"
            answer = wrong if how == "always_wrong" else trial.correct_answer
            rt = 50 if how == "fast" else 900
            if how == "perfect_but_unfinished" and k == len(pending) - 1:
                break
            r = client.post(
                f"/api/participate/{tok}/trials/{t['id']}/answer",
                json={"answer": answer, "rt_ms": rt},
            )
            assert r.status_code == 200
        if how != "perfect_but_unfinished":
            assert client.post(f"/api/participate/{tok}/complete").status_code == 200
    res = client.get(f"/api/studies/{study['id']}/results", headers=auth["researcher"]).json()
    assert res["participants"] == {"total": 6, "completed": 5, "included": 3}
    reasons = {e["participant"]: e["reason"] for e in res["excluded"]}
    assert set(reasons) == {"p3", "p4", "p5"}
    assert "did not complete" in reasons["p5"] and "faster than" in reasons["p4"]
    assert "catch accuracy 0%" in reasons["p3"]
    (run,) = res["runs"]
    assert [p["epsilon_255"] for p in run["points"]] == [0, 4, 16]
    for p in run["points"]:  # only the three perfect participants count
        assert p["n"] == 3 and p["correct"] == 3 and p["ci_low"] < 1 <= p["ci_high"] + 1e-12
    assert run["robust_accuracy"] and run["robust_accuracy"][0]["epsilon_255"] == 0
    csv_text = client.get(f"/api/studies/{study['id']}/trials.csv", headers=auth["researcher"]).text
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    n_trials = db.query(Trial).count()
    assert len(rows) == n_trials
    answered = [r for r in rows if r["answer"]]
    assert all(r["correct"] in ("0", "1") and r["rt_ms"] and r["answered_at"] for r in answered)
    assert {r["side"] for r in rows} <= {"left", "right"}
    assert {r["excluded"] for r in rows if r["participant"] == "p0"} == {"0"}
    assert {r["exclusion_reason"] != "" for r in rows if r["participant"] == "p4"} == {True}


def test_exclusion_rules_one_by_one():
    from backend.models import Study
    from backend.services.studies.analysis import exclusions

    rules = {"min_catch_accuracy": 0.5, "too_fast_ms": 150, "max_too_fast_fraction": 0.25,
             "same_answer_throughout": True}  # fmt: skip
    study = Study(config={"exclusion": rules})

    def rows(sid, answers, correct, rts, phases=None, completed=True):
        phases = phases or ["main"] * len(answers)
        items = zip(answers, correct, rts, phases, strict=True)
        return [{"session_id": sid, "completed": completed, "phase": p, "answer": a, "correct": c,
                 "rt_ms": rt} for a, c, rt, p in items]  # fmt: skip

    data = (
        rows(
            1,
            ["left", "right", "left", "right"],
            [1, 1, 0, 1],
            [900] * 4,
            ["main", "main", "catch", "catch"],
        )
        + rows(
            2,
            ["left", "right", "left", "right"],
            [1, 1, 0, 0],
            [900] * 4,
            ["main", "main", "catch", "catch"],
        )
        + rows(3, ["left", "right", "left", "right"], [1, 1, 1, 1], [100, 100, 900, 900])
        + rows(4, ["left", "left", "left", "left"], [1, 0, 1, 0], [900] * 4)
        + rows(5, ["left", "right"], [1, 1], [900] * 2, completed=False)
        + rows(6, ["left", "right", "left", "right"], [1, 1, 1, 1], [100, 900, 900, 900])
    )
    out = exclusions(study, data)
    assert set(out) == {2, 3, 4, 5}
    assert out[2].startswith("catch accuracy 0%")
    assert "faster than 150 ms" in out[3]
    assert "same answer (left)" in out[4]
    assert "did not complete" in out[5]
