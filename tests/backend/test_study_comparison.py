"""Run against run and the model beside the people (issue 25, items 4 and 6): simulated
participants whose two runs differ by a known threshold ratio (the paired interval covers it;
with no difference it holds 1, and the sentence says the difference is not shown), the
sentence's wording, who counts as having seen both runs, the per-epsilon paired differences,
the model's accuracy read off its curve at people's threshold on a constructed case, and
AutoAttack measured when the stimuli are made."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from sqlalchemy import select

from backend.benchmarks.study_comparison import GRID, simulate_pair
from backend.services import psychometrics as ps
from backend.services.studies import comparison
from tests.backend.study_support import analysed_results, make_dataset, make_run, ready_study


def _compare(a, b, design="2afc", seed=0, names=("PGD-AT run", "SIP-AT run"), claim=True):
    c = comparison.compare_two(a, b, design=design, grid=GRID, seed=seed)
    c["run_a"] = {"run_id": 1, "run_name": names[0], "method": "pgd_at"}
    c["run_b"] = {"run_id": 2, "run_name": names[1], "method": "sip_at"}
    c["claim"] = claim
    c["shows"], c["statement"] = comparison.statement(c, design)
    return c


def test_the_paired_interval_covers_a_known_threshold_ratio():
    """Eight seeded data sets (20 participants on the default design, Weibull, logistic and
    cumulative-normal observers) whose run b has 1.6 times run a's threshold. With 95 %
    coverage, two misses in eight happen in 5 % of such draws: the bound is one miss (the
    draws are seeded, so the test is deterministic); backend/benchmarks/study_comparison.py
    measures the rate over 150 data sets per design."""
    misses, errors = [], []
    for design in ("2afc", "yesno"):
        for i in range(4):
            family = ("weibull", "logistic", "normal")[i % 3]
            a, b, truth = simulate_pair(50 + i, design=design, ratio=1.6, family=family)
            assert truth == pytest.approx(1.6, rel=1e-6)
            t = _compare(a, b, design, seed=i)["threshold_ratio"]
            assert t["value"] is not None and t["resamples"] == ps.PAIRED_BOOT
            if not t["ci_low"] <= truth <= t["ci_high"]:
                misses.append((design, i, t["ci_low"], t["ci_high"]))
            errors.append(math.log(t["value"] / truth))
    assert len(misses) <= 1, misses
    assert abs(float(np.median(errors))) < 0.15, errors


def test_with_no_difference_the_interval_holds_one_and_the_sentence_says_not_shown():
    held = 0
    for design in ("2afc", "yesno"):
        for i in range(3):
            a, b, truth = simulate_pair(70 + i, design=design, ratio=1.0)
            assert truth == pytest.approx(1.0)
            c = _compare(a, b, design, seed=i)
            t = c["threshold_ratio"]
            if t["ci_low"] <= 1 <= t["ci_high"]:
                held += 1
                assert c["shows"] == "not shown"
                s = c["statement"]
                assert s.startswith(
                    "That perturbations of SIP-AT run are harder to spot than those of "
                    "PGD-AT run at low epsilon is not shown:"
                ), s
                assert "holds 1, no difference" in s and f"95 % CI {t['ci_low']:.2f}" in s
                assert "paired over the 20 participants who saw both runs" in s
            # at every epsilon the difference of detection is near 0 and so is its interval
            for p in c["points"]:
                assert p["n_participants"] == 20
                assert p["ci_low"] <= p["difference"] <= p["ci_high"]
    assert held >= 5, held


def test_the_sentence_states_the_claim_the_opposite_or_nothing():
    # four trials per run and epsilon and a large effect: the interval lies above 1
    a, b, _ = simulate_pair(3, ratio=2.5, trials=4, log_t=math.log(2))
    c = _compare(a, b)
    assert c["shows"] == "harder" and c["threshold_ratio"]["ci_low"] > 1, c["threshold_ratio"]
    assert c["statement"].startswith(
        "At low epsilon, perturbations of SIP-AT run are harder to spot than those of PGD-AT "
        "run: the epsilon at which people detect them (their threshold, 75 % correct when "
        "nobody lapses) is "
    ), c["statement"]
    assert c["statement"].endswith(").") and not re.search(r"\.\s+[A-Z]", c["statement"])
    # b's perturbations easier to see: said as the opposite of the paper's claim
    c = _compare(b, a)
    assert c["shows"] == "easier" and c["threshold_ratio"]["ci_high"] < 1
    assert (
        "easier to spot than those of PGD-AT run, the opposite of the SIP-AT paper's claim"
        in (c["statement"])
    )
    # two runs neither of which is SIP-AT: the same numbers, no claim
    c = _compare(a, b, names=("seed 0", "seed 1"), claim=False)
    assert c["statement"].startswith("Perturbations of seed 1 are harder to spot than those")
    # detection at each epsilon: lower for b where the curves rise, with intervals
    mid = [p for p in c["points"] if p["epsilon_255"] in (2.0, 4.0)]
    assert all(p["difference"] < 0 and p["ci_high"] < 0 for p in mid), mid


def test_only_participants_who_saw_both_runs_count_and_sip_at_is_compared_against():
    a, b, _ = simulate_pair(5, ratio=1.3, participants=12)
    counts = {10: dict(enumerate(a)), 20: dict(enumerate(b))}
    counts[10][99] = a[0]  # saw only run 10
    counts[20][98] = b[0]  # saw only run 20
    counts[20][3] = dict.fromkeys(GRID, (0, 0))  # started run 20, answered nothing
    runs = [
        {"run_id": 20, "run_name": "SIP-AT", "method": "sip_at"},
        {"run_id": 10, "run_name": "PGD-AT", "method": "pgd_at"},
        {"run_id": 30, "run_name": "fast SIP-AT", "method": "fast_sip_at"},
    ]
    out = comparison.compare_runs(counts, runs, design="2afc", grid=GRID, seed=0, n_boot=200)
    first = out[0]
    assert (first["run_a"]["run_id"], first["run_b"]["run_id"]) == (10, 20)  # SIP-AT is b
    assert first["claim"] and first["n_participants"] == 11
    assert "the 11 participants who saw both runs" in first["statement"]
    assert first["flags"] == []  # 11 people: at least the 10 asked for
    # two SIP-AT runs: no claim, the later one is b; a run nobody saw: nothing measured
    sip_pair = next(c for c in out if {c["run_a"]["run_id"], c["run_b"]["run_id"]} == {20, 30})
    assert not sip_pair["claim"] and sip_pair["run_b"]["run_id"] == 30
    assert sip_pair["n_participants"] == 0 and sip_pair["shows"] == "not measured"
    assert "no participant saw both runs" in sip_pair["statement"]


def test_few_participants_are_flagged():
    a, b, _ = simulate_pair(6, participants=6)
    counts = {1: dict(enumerate(a)), 2: dict(enumerate(b))}
    runs = [{"run_id": 1, "run_name": "a", "method": "pgd_at"},
            {"run_id": 2, "run_name": "b", "method": "sip_at"}]  # fmt: skip
    (c,) = comparison.compare_runs(counts, runs, design="2afc", grid=GRID, seed=0, n_boot=200)
    assert c["flags"] == [
        "Only 6 participants saw both runs: this analysis asks for at least 10; with fewer, "
        "the interval may be too narrow."
    ]


def test_a_threshold_off_the_grid_gives_no_ratio():
    # run b's perturbations seen at every epsilon: its threshold lies below the grid
    a, b, _ = simulate_pair(8, ratio=0.05, trials=4, log_t=math.log(3))
    c = _compare(a, b)
    t = c["threshold_ratio"]
    assert t["value"] is None and t["ci_low"] is None
    assert t["threshold_b_beyond"] == "below the smallest epsilon tested"
    assert c["shows"] == "not measured"
    assert (
        "people's threshold for SIP-AT run lies below the smallest epsilon tested"
        in (c["statement"])
    )


def test_paired_differences_of_rates_have_a_binomial_floor():
    # everyone right on every trial in both runs: the difference is 0, and its interval is
    # Newcombe's, not [0, 0]
    w = ps.resample_weights(5, 500, 0)
    st = ps.paired_rate_difference([4] * 5, [4] * 5, [4] * 5, [4] * 5, w)
    assert st.value == 0
    assert (st.ci_low, st.ci_high) == pytest.approx(ps.newcombe_difference(20, 20, 20, 20))
    assert st.ci_low < -0.1 and st.ci_high > 0.1
    # Newcombe's interval against a hand computation: 15/20 against 10/20
    lo, hi = ps.newcombe_difference(15, 20, 10, 20)
    l1, u1 = ps.wilson_interval(15, 20)
    l2, u2 = ps.wilson_interval(10, 20)
    assert lo == pytest.approx(0.25 - math.sqrt((0.75 - l1) ** 2 + (u2 - 0.5) ** 2))
    assert hi == pytest.approx(0.25 + math.sqrt((u1 - 0.75) ** 2 + (0.5 - l2) ** 2))


def test_pairing_narrows_the_interval_when_participants_differ():
    """People who differ a lot (log-threshold sd 0.8) but see both runs alike, with enough
    trials each (20 per level) that what they differ by outweighs their binomial noise: the
    paired resamples keep each person's two runs together, so the threshold ratio's interval
    is narrower than resampling each run's participants on their own would make it."""
    a, b, _ = simulate_pair(10, ratio=1.0, sd=0.8, sd_run=0.0, trials=20)
    paired = ps.paired_threshold_ratio(a, b, design="2afc", grid=GRID, seed=0)
    w1, w2 = ps.resample_weights(20, 2000, 1), ps.resample_weights(20, 2000, 2)
    la = ps.ml_log_thresholds(a, w1, design="2afc", grid=GRID)
    lb = ps.ml_log_thresholds(b, w2, design="2afc", grid=GRID)
    lo, hi = np.quantile(lb[1:] - la[1:], [0.025, 0.975])
    assert math.log(paired.ci_high / paired.ci_low) < 0.8 * (hi - lo), (paired, lo, hi)


def test_the_grid_fit_finds_a_known_threshold():
    # noiseless counts (many trials at the exact Weibull probabilities): the grid's maximum
    # likelihood lands on the threshold within a step's tenth
    t, beta = 5.0, 2.5
    unit = {}
    for x in [*GRID, 32.0]:
        p = 0.5 + 0.5 * (-math.expm1(-math.log(2) * (x / t) ** beta))
        unit[x] = (round(10_000 * p), 10_000)
    w = ps.resample_weights(1, 0, 0)
    (u,) = ps.ml_log_thresholds([unit], w, design="2afc", grid=GRID)
    assert math.exp(u) == pytest.approx(t, rel=0.01)


# ------------------------------------------------------------- the model at people's threshold


CURVE = [
    {"epsilon_255": 0.0, "accuracy": 0.9},
    {"epsilon_255": 2.0, "accuracy": 0.8},
    {"epsilon_255": 8.0, "accuracy": 0.4},
    {"epsilon_255": 16.0, "accuracy": 0.1},
]


def test_accuracy_at_a_threshold_is_read_off_the_curve_in_log_epsilon():
    # 4 lies halfway between 2 and 8 in ln(epsilon): halfway between 80 % and 40 %
    assert comparison.accuracy_at(CURVE, 4.0) == pytest.approx(0.6)
    # a quarter of the way from 8 to 16 in ln(epsilon): 8 * 2 ** 0.25
    assert comparison.accuracy_at(CURVE, 8 * 2**0.25) == pytest.approx(0.4 - 0.25 * 0.3)
    assert comparison.accuracy_at(CURVE, 2.0) == pytest.approx(0.8)  # a measured epsilon
    assert comparison.accuracy_at(CURVE, 16.0) == pytest.approx(0.1)
    # nothing extrapolated: below the smallest positive epsilon or above the largest
    assert comparison.accuracy_at(CURVE, 1.0) is None
    assert comparison.accuracy_at(CURVE, 20.0) is None
    assert comparison.accuracy_at(CURVE, None) is None


def test_the_interval_comes_from_the_thresholds_interval():
    fit = {"threshold_255": 4.0, "threshold_beyond": None,
           "threshold_ci_low": 2.0, "threshold_ci_low_beyond": None,
           "threshold_ci_high": 8.0, "threshold_ci_high_beyond": None}  # fmt: skip
    curves = [{"attack": "autoattack", "label": "AutoAttack", "n_images": 32, "points": CURVE}]
    (c,) = comparison.model_at_threshold(fit, curves)["curves"]
    # a larger epsilon, a lower accuracy: the threshold's upper bound gives the lower bound
    assert (c["accuracy"], c["ci_low"], c["ci_high"]) == pytest.approx((0.6, 0.4, 0.8))
    # the threshold's interval reaching above the grid: no lower bound, at most 10 % known
    fit |= {"threshold_ci_high": None, "threshold_ci_high_beyond": "above"}
    (c,) = comparison.model_at_threshold(fit, curves)["curves"]
    assert c["ci_low"] is None and c["ci_low_beyond"] == "above"
    assert c["at_largest"] == pytest.approx(0.1) and c["ci_high"] == pytest.approx(0.8)
    # no fit: nothing to read
    assert comparison.model_at_threshold(None, curves) is None


def test_model_curves_prefer_autoattack_and_keep_pgd_beside_it():
    run = {
        "model_autoattack": {"version": "standard", "n_images": 32, "points": CURVE},
        "model_accuracy": {"steps": 10, "restarts": 2, "n_images": 60, "points": CURVE},
        "robust_accuracy": CURVE,
    }
    got = comparison.model_curves(run)
    assert [c["attack"] for c in got] == ["autoattack", "pgd"]
    assert got[0]["label"] == "AutoAttack (standard, L∞), 32 images"
    assert got[1]["label"] == "PGD-10, 2 restarts, 60 images"
    older = comparison.model_curves({"robust_accuracy": CURVE})
    assert [c["label"] for c in older] == ["PGD, the run's own evaluation"]


# ----------------------------------------------------------------- end to end, through the API


def test_autoattack_is_measured_with_the_stimuli_and_read_at_the_threshold(
    client, auth, db, tiny_checkpoint
):
    from backend.models import Study, Trial

    ds, _ = make_dataset(db, n=12)
    run_id = make_run(db, ds, tiny_checkpoint)
    rules = {"same_answer_throughout": False}
    s = ready_study(client, auth["researcher"], db, [run_id], exclusion=rules,
                    epsilons_255=[0, 2, 16], autoattack_images=3)  # fmt: skip
    study = db.get(Study, s["id"])
    table = study.config["model_autoattack"]
    assert table["attack"] == "AutoAttack" and table["version"] == "standard"
    assert table["package"].startswith("pyautoattack ")
    assert table["attacks"] == ["apgd-ce", "fab-t", "square"]  # two classes: no APGD-T
    assert table["n_images"] == 3 and table["images"] == "the first 3 of the study's main images"
    (entry,) = table["runs"]
    points = entry["points"]
    assert [p["epsilon_255"] for p in points] == [0.0, 2.0, 16.0]
    accs = [p["accuracy"] for p in points]
    assert all(b <= a for a, b in zip(accs, accs[1:], strict=False)), accs
    for p in points:
        assert p["n"] == 3 and p["accuracy"] == pytest.approx(p["n_robust"] / 3)
        # the stronger attack never leaves more images robust than PGD on the same images
        # (1/3: one image's random start)
        assert p["accuracy"] <= p["pgd_accuracy"] + 1 / 3 + 1e-9, points
    assert points[0]["accuracy"] == points[0]["pgd_accuracy"]  # clean: the same images
    # three participants, right on every trial above 0: the analysis reads both curves
    device = {"screen_width": 1920, "screen_height": 1080, "window_width": 1400,
              "window_height": 900, "device_pixel_ratio": 1}  # fmt: skip
    for i in range(3):
        tok = client.post(f"/api/participate/links/{s['link_token']}/sessions",
                          json={"prolific_pid": f"aa{i}"}).json()["token"]  # fmt: skip
        client.post(f"/api/participate/{tok}/consent")
        client.post(f"/api/participate/{tok}/device", json=device)
        for t in client.get(f"/api/participate/{tok}/trials").json()["data"]:
            right = db.scalar(select(Trial.correct_answer).where(Trial.public_id == t["id"]))
            body = {"answer": right, "rt_ms": 700, "display_scale": 16}
            client.post(f"/api/participate/{tok}/trials/{t['id']}/answer", json=body)
        client.post(f"/api/participate/{tok}/complete")
    res = analysed_results(client, auth["researcher"], s["id"])
    (run,) = res["runs"]
    assert run["model_autoattack"]["points"] == points
    at = run["model_at_threshold"]
    assert [c["attack"] for c in at["curves"]] == ["autoattack", "pgd"]
    assert at["threshold_255"] == run["fit"]["threshold_255"]
    assert res["comparisons"] == []  # one run: nothing to compare
    # the run's own page reads the same figures
    r = client.get(f"/api/runs/{run_id}/results", headers=auth["researcher"]).json()
    (entry,) = r["accuracy_at_threshold"]
    assert entry["study_id"] == s["id"] and entry["curves"] == at["curves"]


def test_autoattack_runs_at_most_eight_epsilons_of_a_long_ladder():
    from types import SimpleNamespace

    from backend.services.studies import stimuli

    short = SimpleNamespace(config={"epsilons_255": [0, 1, 2, 4, 8, 16]})
    assert stimuli.autoattack_epsilons(short) == [0.0, 1.0, 2.0, 4.0, 8.0, 16.0]
    ladder = [round(float(e), 4) for e in np.geomspace(0.5, 24, 25)]
    long = SimpleNamespace(config={"epsilons_255": ladder})
    got = stimuli.autoattack_epsilons(long)
    assert got[0] == 0.0 and len(got) == 1 + stimuli.AUTOATTACK_MAX_EPSILONS
    assert got[1] == ladder[0] and got[-1] == ladder[-1]  # the ladder's ends included
    steps = np.diff(np.log(got[1:]))
    assert steps.max() / steps.min() <= 4 / 3 + 1e-3  # every 3rd or 4th of the 25 levels
