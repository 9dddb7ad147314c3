"""How trustworthy a study's numbers are, by simulation: simulated participants whose
psychometric functions are known are fed through the product's own analysis
(backend.services.studies.analysis.analyse_run, psignifit underneath), on the default design.

    python -m backend.benchmarks.study_design [--datasets 200] [--observers 200] [--procs 2]

Prints one line:
    {"bench": "study_design", "coverage_2afc": ..., "coverage_yesno": ...,
     "quest_trials_ratio": ..., ...}

coverage_2afc, coverage_yesno: over `--datasets` simulated studies per design, the share whose
95 % threshold interval contains the true threshold. A study: 20 participants on the default
design (epsilons 1, 2, 4, 8, 16 /255, 2 trials per epsilon, 2 catch trials at 32/255; yes/no
adds as many clean trials). Each study draws its group threshold log-uniformly in 2-12 /255, a
Weibull-equivalent slope in 1.5-4, a lapse rate in 0-5 %, a between-participant spread of
log thresholds (sd 0.1-0.5) and, in yes/no, each participant's false-alarm rate (logit-normal
around 3-20 %). The generator cycles over three families: Weibull, logistic and cumulative
normal in log epsilon (the last two are not the Weibull the analysis fits). The true threshold
is where the population's average sigmoid is halfway up. No participant is excluded.

quest_trials_ratio: over `--observers` simulated participants (2AFC, same ranges and
families), the share of the 100 constant-stimuli trials (20 at each of the five epsilons, the
participant's own psignifit fit) that QUEST+ (the `questplus` package, a 25-level ladder
log-spaced from 0.5 to 32 /255, Weibull parameter grid, uniform prior, posterior-mean
threshold) needs for its root-mean-square log-threshold error to reach the constant stimuli's.

Goals (issue 25): coverage >= 0.93 for both designs, quest_trials_ratio <= 0.6. The
exit status is 1 when a goal is missed. Runs in `--procs` processes, one BLAS thread each.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402 - the thread limits above must precede numpy
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from multiprocessing import get_context  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from scipy import optimize, special  # noqa: E402

GRID = [1.0, 2.0, 4.0, 8.0, 16.0]
CATCH = 32.0
PARTICIPANTS = 20
TRIALS_PER_LEVEL = 2  # the default design's trials_per_condition
CATCH_TRIALS = 2
FAMILIES = ("weibull", "logistic", "normal")
GOAL_COVERAGE = 0.93
GOAL_QUEST = 0.6
CS_TRIALS_PER_LEVEL = 20  # one participant's constant stimuli: 100 trials
LADDER = np.geomspace(0.5, 32.0, 25)
# the slope of a Weibull (Gumbel in log x) at its midpoint, per unit of beta: ln(2) / 2
_MID_SLOPE = math.log(2) / 2


def family_cdf(family: str, u: np.ndarray, beta: float) -> np.ndarray:
    """The sigmoid at u = ln(x) - ln(threshold) (0.5 at u = 0), with the slope at the
    threshold of a Weibull of shape beta."""
    if family == "weibull":
        return np.asarray(-np.expm1(-math.log(2) * np.exp(beta * u)))
    if family == "logistic":
        return np.asarray(special.expit(4 * _MID_SLOPE * beta * u))
    sigma = 1 / (_MID_SLOPE * beta * math.sqrt(2 * math.pi))
    return np.asarray(special.ndtr(u / sigma))


def group_threshold(family: str, log_t: float, beta: float, sd: float) -> float:
    """Where the population's average sigmoid (participants' log thresholds ~ N(log_t, sd))
    is 0.5, by Gauss-Hermite quadrature."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(40)
    weights = weights / weights.sum()

    def mean_f(lx: float) -> float:
        return float((weights * family_cdf(family, lx - (log_t + sd * nodes), beta)).sum()) - 0.5

    return math.exp(optimize.brentq(mean_f, log_t - 10, log_t + 10))


def simulate_study(design: str, index: int, seed: int) -> tuple[dict[int, Any], float]:
    rng = np.random.default_rng([seed, index, 0 if design == "2afc" else 1])
    family = FAMILIES[index % len(FAMILIES)]
    log_t = rng.uniform(math.log(2), math.log(12))
    beta = rng.uniform(1.5, 4.0)
    lapse = rng.uniform(0.0, 0.05)
    sd = rng.uniform(0.1, 0.5)
    fa_mean = rng.uniform(0.03, 0.2)
    units: dict[int, Any] = {}
    for p in range(PARTICIPANTS):
        own = log_t + rng.normal(0, sd)
        guess = (
            0.5
            if design == "2afc"
            else float(special.expit(special.logit(fa_mean) + rng.normal(0, 0.5)))
        )
        unit: dict[float, tuple[int, int]] = {}
        for x, n in [*((g, TRIALS_PER_LEVEL) for g in GRID), (CATCH, CATCH_TRIALS)]:
            f = float(family_cdf(family, np.array(math.log(x) - own), beta))
            prob = guess + (1 - guess - lapse) * f
            unit[x] = (int(rng.binomial(n, prob)), n)
        if design == "yesno":
            clean = TRIALS_PER_LEVEL * len(GRID)
            unit[0.0] = (int(rng.binomial(clean, guess)), clean)
        units[p] = unit
    return units, group_threshold(family, log_t, beta, sd)


def coverage_one(job: tuple[str, int, int]) -> dict[str, Any]:
    from backend.services.studies.analysis import analyse_run

    design, index, seed = job
    units, truth = simulate_study(design, index, seed)
    started = time.perf_counter()
    out = analyse_run(
        units,
        design=design,
        grid=GRID,
        catch_epsilon_255=CATCH,
        seed=seed + index,
        own_fits=False,
    )
    seconds = time.perf_counter() - started
    fit = out["fit"]
    if fit is None:
        return {"design": design, "covered": False, "failed": True, "seconds": seconds}
    lo = fit["threshold_ci_low"]
    hi = fit["threshold_ci_high"]
    lo = 0.0 if lo is None and fit["threshold_ci_low_beyond"] == "below" else lo
    hi = math.inf if hi is None and fit["threshold_ci_high_beyond"] == "above" else hi
    covered = lo is not None and hi is not None and lo <= truth <= hi
    return {
        "design": design,
        "covered": covered,
        "failed": False,
        "log_error": math.log(fit["threshold_estimate_255"] / truth),
        "flagged": bool(fit["flags"]),
        "seconds": seconds,
    }


def quest_one(job: tuple[int, int, int]) -> dict[str, Any]:
    """One simulated 2AFC participant measured twice: 100 constant-stimuli trials fitted by
    psignifit, and QUEST+ for `quest_trials` trials; the log-threshold errors."""
    import questplus

    from backend.services import psychometrics

    index, seed, quest_trials = job
    rng = np.random.default_rng([seed, index, 2])
    family = FAMILIES[index % len(FAMILIES)]
    log_t = rng.uniform(math.log(2), math.log(12))
    beta = rng.uniform(1.5, 4.0)
    lapse = rng.uniform(0.0, 0.05)

    def p_correct(x: float) -> float:
        return 0.5 + (0.5 - lapse) * float(family_cdf(family, np.array(math.log(x) - log_t), beta))

    blocks = []
    for x in GRID:
        blocks.append(
            (x, int(rng.binomial(CS_TRIALS_PER_LEVEL, p_correct(x))), CS_TRIALS_PER_LEVEL)
        )
    fit = psychometrics.fit_curve(
        blocks, design="2afc", grid=GRID, n_participants=1, samples=200, group=False
    )
    cs_error = math.log(fit.threshold) - log_t if fit is not None else math.inf

    log10_ladder = np.log10(LADDER)
    thresholds = np.linspace(log10_ladder[0], log10_ladder[-1], 41)
    slopes = np.array([1.0, 1.5, 2.0, 3.0, 4.0, 6.0])
    lapses = np.array([0.0, 0.02, 0.05])
    q = questplus.QuestPlusWeibull(
        intensities=log10_ladder,
        thresholds=thresholds,
        slopes=slopes,
        lower_asymptotes=[0.5],
        lapse_rates=lapses,
        responses=["Correct", "Incorrect"],
        stim_scale="log10",
    )
    # questplus's Weibull is 1 - exp(-10 ** (beta (x - t))): halfway up where
    # 10 ** (beta (x - t)) = ln 2, i.e. x = t + log10(ln 2) / beta (its beta is the shape)
    post_dims = q.posterior.dims
    t_axis = np.reshape(thresholds, [len(thresholds) if d == "threshold" else 1 for d in post_dims])
    b_axis = np.reshape(slopes, [len(slopes) if d == "slope" else 1 for d in post_dims])
    x50_ln = (t_axis + math.log10(math.log(2)) / b_axis) * math.log(10)
    errors = np.empty(quest_trials)
    for t in range(quest_trials):
        level = float(q.next_intensity)
        correct = rng.random() < p_correct(10**level)
        q.update(intensity=level, response="Correct" if correct else "Incorrect")
        post = np.asarray(q.posterior.values)
        errors[t] = float((post * x50_ln).sum() / post.sum()) - log_t
    return {"cs_error": cs_error, "quest_errors": errors.tolist()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=int, default=200, help="simulated studies per design")
    parser.add_argument("--observers", type=int, default=200, help="participants for QUEST+")
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=2025)
    args = parser.parse_args()
    started = time.perf_counter()
    jobs = [(d, i, args.seed) for i in range(args.datasets) for d in ("2afc", "yesno")]
    cs_trials = CS_TRIALS_PER_LEVEL * len(GRID)
    quest_trials = int(cs_trials * 1.5)
    with get_context("spawn").Pool(args.procs) as pool:
        cov = pool.map(coverage_one, jobs, chunksize=1)
        quest = pool.map(
            quest_one, [(i, args.seed, quest_trials) for i in range(args.observers)], chunksize=1
        )
    result: dict[str, Any] = {"bench": "study_design"}
    for design in ("2afc", "yesno"):
        mine = [c for c in cov if c["design"] == design]
        result[f"coverage_{design}"] = round(sum(c["covered"] for c in mine) / len(mine), 3)
    cs_rmse = math.sqrt(float(np.mean([q["cs_error"] ** 2 for q in quest])))
    q_rmse = np.sqrt(np.mean(np.array([q["quest_errors"] for q in quest]) ** 2, axis=0))
    reached = np.nonzero(q_rmse <= cs_rmse)[0]
    ratio = (int(reached[0]) + 1) / cs_trials if reached.size else None
    result["quest_trials_ratio"] = round(ratio, 3) if ratio is not None else None
    for design in ("2afc", "yesno"):
        mine = [c for c in cov if c["design"] == design and not c["failed"]]
        errs = np.array([c["log_error"] for c in mine])
        result[f"median_log_error_{design}"] = round(float(np.median(errs)), 4)
        result[f"flagged_{design}"] = round(sum(c["flagged"] for c in mine) / max(1, len(mine)), 3)
        result[f"fit_s_{design}"] = round(float(np.mean([c["seconds"] for c in mine])), 2)
        result[f"failed_{design}"] = sum(c["failed"] for c in cov if c["design"] == design)
    result["cs_rmse_log"] = round(cs_rmse, 4)
    result["quest_rmse_log_at_100"] = round(float(q_rmse[cs_trials - 1]), 4)
    result["datasets"] = args.datasets
    result["observers"] = args.observers
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result))
    ok = (
        result["coverage_2afc"] >= GOAL_COVERAGE
        and result["coverage_yesno"] >= GOAL_COVERAGE
        and ratio is not None
        and ratio <= GOAL_QUEST
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
