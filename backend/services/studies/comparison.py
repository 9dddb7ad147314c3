"""Two comparisons a study's results carry beyond each run's own curve (docs/studies.md,
"Run against run" and "The model beside the people"):

- **run against run**: for two runs of one detection study, the participants who saw both,
  and the paired (within-participant) difference of their thresholds (as a ratio) and of
  detection at each epsilon, with intervals from resampling those participants; one sentence
  says what the comparison shows, worded as the SIP-AT paper's claim where one run is SIP-AT
  and the other is not ("perturbations of the SIP-AT model are harder to spot at low
  epsilon");
- **the model at the people's threshold**: each run's robust accuracy (AutoAttack, and PGD)
  read off the model's accuracy-vs-epsilon curve at the people's measured threshold, the
  interval from the threshold's interval.

Plain data in and out (no database): analysis.results_from calls both.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

from backend.services import psychometrics
from backend.services.studies.common import eps_key

Unit = Mapping[float, tuple[int, int]]  # one participant's {level: (k, n)} in one run

# the runs the SIP-AT paper's claim is about (runconfig.SIP_METHODS, without importing it here)
SIP_METHODS = ("sip_at", "fast_sip_at")


# --------------------------------------------------------------------------- run against run


def _answered(unit: Unit | None) -> bool:
    return unit is not None and any(n > 0 for _, n in unit.values())


def pairs(runs: Sequence[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """Every pair of the study's runs as (a, b), b compared against a: where exactly one of
    the two is a SIP-AT run it is b (the paper's claim is about it), else the later run of
    the study's list is b."""
    out = []
    for a, b in combinations(runs, 2):
        if a.get("method") in SIP_METHODS and b.get("method") not in SIP_METHODS:
            a, b = b, a
        out.append((a, b))
    return out


def _fmt(v: float | None) -> str:
    return "unbounded" if v is None else f"{v:.2f}"


def statement(c: Mapping[str, Any], design: str) -> tuple[str, str]:
    """(what the comparison shows: "harder", "easier", "not shown" or "not measured", the one
    sentence the study page states). b's perturbations are "harder to spot" when b's
    threshold is larger, and that is said only when the whole 95 % interval of the ratio lies
    above 1; an interval that holds 1 says the difference is not shown."""
    a, b = c["run_a"]["run_name"], c["run_b"]["run_name"]
    m = c["n_participants"]
    t = c["threshold_ratio"]
    people = f"the {m} participant{'' if m == 1 else 's'} who saw both runs"
    what = (
        "75 % correct when nobody lapses"
        if design == "2afc"
        else "halfway up from the false-alarm rate"
    )
    claim = c["claim"]
    if m < 2:
        return "not measured", (
            f"Whether perturbations of {b} are harder to spot than those of {a} is not "
            f"measured: {'no participant' if m == 0 else 'only one participant'} saw both runs."
        )
    if t["value"] is None:
        which, where = (
            (a, t["threshold_a_beyond"])
            if t["threshold_a_beyond"]
            else (
                b,
                t["threshold_b_beyond"],
            )
        )
        return "not measured", (
            f"Whether perturbations of {b} are harder to spot than those of {a} is not "
            f"measured: people's threshold for {which} lies {where} (paired over {people})."
        )
    ratio = f"{t['value']:.2f}"
    ci = f"95 % CI {_fmt(t['ci_low'])} – {_fmt(t['ci_high'])}"
    threshold = f"the epsilon at which people detect them (their threshold, {what})"
    if t["ci_low"] is not None and t["ci_low"] > 1:
        lead = "At low epsilon, perturbations" if claim else "Perturbations"
        return "harder", (
            f"{lead} of {b} are harder to spot than those of {a}: {threshold} is {ratio} "
            f"times as large ({ci}; paired over {people})."
        )
    if t["ci_high"] is not None and t["ci_high"] < 1:
        rider = ", the opposite of the SIP-AT paper's claim" if claim else ""
        return "easier", (
            f"Perturbations of {b} are easier to spot than those of {a}{rider}: {threshold} "
            f"is {ratio} times as large ({ci}; paired over {people})."
        )
    subject = (
        f"That perturbations of {b} are harder to spot than those of {a} at low epsilon"
        if claim
        else f"A difference between how easily perturbations of {b} and of {a} are spotted"
    )
    return "not shown", (
        f"{subject} is not shown: {threshold} is {ratio} times as large for {b}, but the "
        f"interval ({ci}) holds 1, no difference (paired over {people})."
    )


def _finite(v: float | None) -> float | None:
    return v if v is not None and 0 < v < math.inf else None


def compare_two(
    units_a: Sequence[Unit],
    units_b: Sequence[Unit],
    *,
    design: str,
    grid: Sequence[float],
    seed: int,
    n_boot: int = psychometrics.PAIRED_BOOT,
) -> dict[str, Any]:
    """The paired comparison of run b against run a, units_a[i] and units_b[i] being one
    participant's counts in the two runs (as analysis.participant_counts gives them): the
    threshold ratio b / a and, per tested epsilon, b's detection minus a's, all with
    intervals over the same `n_boot` resamples of those participants."""
    dsg: psychometrics.Design = "2afc" if design == "2afc" else "yesno"
    m = len(units_a)
    positive = sorted({float(e) for e in grid if e > 0})
    ratio = psychometrics.paired_threshold_ratio(
        units_a, units_b, design=dsg, grid=positive, n_boot=n_boot, seed=seed
    )
    lo_grid, hi_grid = (positive[0], positive[-1]) if positive else (0.0, 0.0)

    def off_grid(v: float | None) -> str | None:
        """Where a threshold lies when it is not within the tested epsilons."""
        if v is None:
            return "off the fitted range"
        if v < lo_grid - 1e-9:
            return "below the smallest epsilon tested"
        return "above the largest epsilon tested" if v > hi_grid + 1e-9 else None

    # a ratio of thresholds outside the tested epsilons would be an extrapolation: none
    beyond = {"a": off_grid(ratio.threshold_a), "b": off_grid(ratio.threshold_b)}
    value = ratio.ratio if not any(beyond.values()) else None
    threshold = {
        "value": value,
        "ci_low": ratio.ci_low if value is not None else None,
        "ci_high": ratio.ci_high if value is not None else None,
        "threshold_a_255": _finite(ratio.threshold_a),
        "threshold_b_255": _finite(ratio.threshold_b),
        "threshold_a_beyond": beyond["a"],
        "threshold_b_beyond": beyond["b"],
        "off_grid_share": ratio.off_grid,
        "resamples": ratio.n_boot,
        "method": (
            "b's threshold over a's, each the maximum-likelihood Weibull of the pooled trials "
            "on a fixed grid (lapse at most 20 %); 95 % percentile interval over "
            f"{ratio.n_boot:,} resamples of the participants who saw both runs, both runs "
            "refitted on each"
        ),
    }
    weights = psychometrics.resample_weights(m, n_boot, seed) if m else None
    points = []
    for e in positive:
        key = float(eps_key(e))
        ka = [u.get(key, (0, 0))[0] for u in units_a]
        na = [u.get(key, (0, 0))[1] for u in units_a]
        kb = [u.get(key, (0, 0))[0] for u in units_b]
        nb = [u.get(key, (0, 0))[1] for u in units_b]
        both = sum(1 for x, y in zip(na, nb, strict=True) if x > 0 and y > 0)
        if not both or weights is None:
            continue
        # a level counts the participants with trials at it in both runs
        keep = [i for i in range(m) if na[i] > 0 and nb[i] > 0]
        w = weights[:, keep]
        st = psychometrics.paired_rate_difference(
            [ka[i] for i in keep],
            [na[i] for i in keep],
            [kb[i] for i in keep],
            [nb[i] for i in keep],
            w,
        )
        point: dict[str, Any] = {
            "epsilon_255": e,
            "n_participants": both,
            "a": sum(ka[i] for i in keep) / sum(na[i] for i in keep),
            "b": sum(kb[i] for i in keep) / sum(nb[i] for i in keep),
            "difference": st.value,
            "ci_low": st.ci_low,
            "ci_high": st.ci_high,
        }
        if dsg == "yesno":
            da, db = [], []
            for i in keep:
                fa_a, fa_b = units_a[i].get(0.0, (0, 0)), units_b[i].get(0.0, (0, 0))
                if fa_a[1] > 0 and fa_b[1] > 0:
                    da.append((i, psychometrics.d_prime(ka[i], na[i], *fa_a).d_prime))
                    db.append(psychometrics.d_prime(kb[i], nb[i], *fa_b).d_prime)
            d = psychometrics.paired_mean_difference(
                [v for _, v in da], db, weights[:, [i for i, _ in da]]
            )
            point.update(
                d_prime_difference=d.value, d_prime_ci_low=d.ci_low, d_prime_ci_high=d.ci_high
            )
        points.append(point)
    return {"n_participants": m, "threshold_ratio": threshold, "points": points}


def compare_runs(
    counts: Mapping[int, Mapping[Any, Unit]],
    runs: Sequence[Mapping[str, Any]],
    *,
    design: str,
    grid: Sequence[float],
    seed: int,
    n_boot: int = psychometrics.PAIRED_BOOT,
) -> list[dict[str, Any]]:
    """Every pair of the study's runs compared (pairs() orders each), from the included
    participants' counts per run ({run id: {participant: {level: (k, n)}}}); only the
    participants with answered trials of both runs count."""
    out = []
    for a, b in pairs(runs):
        ca, cb = counts.get(a["run_id"], {}), counts.get(b["run_id"], {})
        both = sorted((p for p in ca if _answered(ca[p]) and _answered(cb.get(p))), key=str)
        c = compare_two(
            [ca[p] for p in both],
            [cb[p] for p in both],
            design=design,
            grid=grid,
            seed=seed + 7919 * int(a["run_id"]) + int(b["run_id"]),
            n_boot=n_boot,
        )
        c["run_a"] = {k: a.get(k) for k in ("run_id", "run_name", "method")}
        c["run_b"] = {k: b.get(k) for k in ("run_id", "run_name", "method")}
        c["claim"] = b.get("method") in SIP_METHODS and a.get("method") not in SIP_METHODS
        c["shows"], c["statement"] = statement(c, design)
        c["flags"] = (
            [
                f"Only {c['n_participants']} participants saw both runs: this analysis asks "
                f"for at least {psychometrics.MIN_PARTICIPANTS}; with fewer, the interval may "
                "be too narrow."
            ]
            if 2 <= c["n_participants"] < psychometrics.MIN_PARTICIPANTS
            else []
        )
        out.append(c)
    return out


# ------------------------------------------------------------- the model at people's threshold


def accuracy_at(points: Sequence[Mapping[str, Any]], eps_255: float | None) -> float | None:
    """The model's accuracy at eps_255 grey levels read off its measured curve (points
    {"epsilon_255", "accuracy"}): exact at a measured epsilon, else linear in ln(epsilon)
    between the two measured epsilons around it (the grids are log-spaced). None outside the
    measured positive epsilons: nothing is extrapolated."""
    pts = sorted(
        (float(p["epsilon_255"]), float(p["accuracy"]))
        for p in points
        if p.get("accuracy") is not None and float(p["epsilon_255"]) > 0
    )
    if eps_255 is None or not pts or eps_255 <= 0:
        return None
    x = float(eps_255)
    for e, acc in pts:
        if abs(e - x) <= 1e-9 * max(1.0, e):
            return acc
    for (e0, a0), (e1, a1) in zip(pts, pts[1:], strict=False):
        if e0 < x < e1:
            w = (math.log(x) - math.log(e0)) / (math.log(e1) - math.log(e0))
            return a0 + w * (a1 - a0)
    return None


def model_curves(run: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The model's accuracy-vs-epsilon curves of a run's results entry: AutoAttack's where it
    was measured, PGD's at the study's epsilons (or, for a study made before that, the run's
    own evaluation)."""
    out = []
    aa = run.get("model_autoattack")
    if aa and aa.get("points"):
        out.append(
            {
                "attack": "autoattack",
                "label": f"AutoAttack ({aa.get('version', 'standard')}, L∞), "
                f"{aa.get('n_images')} images",
                "n_images": aa.get("n_images"),
                "points": aa["points"],
            }
        )
    pgd = run.get("model_accuracy")
    if pgd and pgd.get("points"):
        out.append(
            {
                "attack": "pgd",
                "label": f"PGD-{pgd.get('steps')}, {pgd.get('restarts')} restarts, "
                f"{pgd.get('n_images')} images",
                "n_images": pgd.get("n_images"),
                "points": pgd["points"],
            }
        )
    elif run.get("robust_accuracy"):
        out.append(
            {
                "attack": "pgd",
                "label": "PGD, the run's own evaluation",
                "n_images": None,
                "points": run["robust_accuracy"],
            }
        )
    return out


def model_at_threshold(
    fit: Mapping[str, Any] | None, curves: Sequence[Mapping[str, Any]]
) -> dict[str, Any] | None:
    """Each curve's accuracy at the people's threshold (fit: analysis.fit_json's, where a
    threshold or bound off the tested epsilons is None with its `..._beyond`), and its
    interval: the accuracy at the threshold interval's upper bound (a larger epsilon, a lower
    accuracy: every curve is the worst case over smaller epsilons, so it never rises) and at
    its lower bound. A threshold or bound off the grid gives no number; `at_smallest` and
    `at_largest` (the accuracy at the grid's ends) say what is known then: above the grid
    the accuracy is at most `at_largest`, below it at least `at_smallest`."""
    if fit is None or not curves:
        return None
    t, t_lo, t_hi = fit["threshold_255"], fit["threshold_ci_low"], fit["threshold_ci_high"]
    out = []
    for c in curves:
        positive = sorted(
            (float(p["epsilon_255"]), float(p["accuracy"]))
            for p in c["points"]
            if float(p["epsilon_255"]) > 0
        )
        value = accuracy_at(c["points"], t)
        low = accuracy_at(c["points"], t_hi)
        high = accuracy_at(c["points"], t_lo)
        out.append(
            {
                "attack": c["attack"],
                "label": c["label"],
                "n_images": c["n_images"],
                "accuracy": value,
                "accuracy_beyond": fit["threshold_beyond"] if value is None else None,
                "ci_low": low,
                "ci_low_beyond": fit.get("threshold_ci_high_beyond") if low is None else None,
                "ci_high": high,
                "ci_high_beyond": fit.get("threshold_ci_low_beyond") if high is None else None,
                "at_smallest": positive[0][1] if positive else None,
                "at_largest": positive[-1][1] if positive else None,
            }
        )
    return {
        "threshold_255": t,
        "threshold_beyond": fit["threshold_beyond"],
        "threshold_ci_low": t_lo,
        "threshold_ci_low_beyond": fit.get("threshold_ci_low_beyond"),
        "threshold_ci_high": t_hi,
        "threshold_ci_high_beyond": fit.get("threshold_ci_high_beyond"),
        "interpolation": "linear in ln(epsilon) between the two measured epsilons around it",
        "curves": out,
    }
