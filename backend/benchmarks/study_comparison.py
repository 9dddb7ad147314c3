"""How trustworthy the run-against-run comparison is, by simulation: pairs of runs whose
thresholds differ by a known ratio, seen by the same simulated participants, fed through the
product's comparison (backend.services.studies.comparison.compare_two).

    python -m backend.benchmarks.study_comparison [--datasets 150] [--ratio 1.5]

Prints one line:
    {"bench": "study_comparison", "coverage_2afc": ..., "coverage_yesno": ..., ...}

A data set: 20 participants on the default design (epsilons 1, 2, 4, 8, 16 /255, 2 trials
per run and epsilon, 2 catch trials at 32/255 per run; yes/no adds as many clean trials),
each seeing both runs. Each data set draws a group threshold log-uniformly in 2-8 /255, a
Weibull-equivalent slope in 1.5-4, a lapse rate in 0-5 %, participants' log thresholds around
it (sd 0.3, shared by both runs: the pairing) and in yes/no their false-alarm rates
(logit-normal around 3-20 %). Run b's log thresholds are run a's plus ln(ratio) plus a
run-specific wobble (sd 0.1 per participant). The generator cycles over Weibull, logistic and
cumulative normal sigmoids. The true ratio is that of the two population thresholds (where
each population's average sigmoid is halfway up). coverage_*: the share of data sets whose
95 % interval of the ratio holds it.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402 - the thread limits above must precede numpy
import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from scipy import special  # noqa: E402

from backend.benchmarks.study_design import FAMILIES, family_cdf, group_threshold  # noqa: E402

GRID = [1.0, 2.0, 4.0, 8.0, 16.0]
CATCH = 32.0

Unit = dict[float, tuple[int, int]]


def simulate_pair(
    seed: int,
    *,
    design: str = "2afc",
    ratio: float = 1.5,
    participants: int = 20,
    trials: int = 2,
    sd: float = 0.3,
    sd_run: float = 0.1,
    family: str = "weibull",
    log_t: float | None = None,
) -> tuple[list[Unit], list[Unit], float]:
    """(run a's units, run b's units, the true ratio of b's population threshold to a's):
    units[i] is participant i's {level: (k, n)} in that run."""
    rng = np.random.default_rng(seed)
    centre = rng.uniform(math.log(2), math.log(8)) if log_t is None else log_t
    beta = rng.uniform(1.5, 4.0)
    lapse = rng.uniform(0.0, 0.05)
    fa_mean = rng.uniform(0.03, 0.2)
    units_a: list[Unit] = []
    units_b: list[Unit] = []
    for _ in range(participants):
        own = centre + rng.normal(0, sd)
        guess = (
            0.5
            if design == "2afc"
            else float(special.expit(special.logit(fa_mean) + rng.normal(0, 0.5)))
        )
        for shift, out in (
            (rng.normal(0, sd_run), units_a),
            (math.log(ratio) + rng.normal(0, sd_run), units_b),
        ):
            unit: Unit = {}
            for x, n in [*((g, trials) for g in GRID), (CATCH, 2)]:
                f = float(family_cdf(family, np.array(math.log(x) - own - shift), beta))
                unit[x] = (int(rng.binomial(n, guess + (1 - guess - lapse) * f)), n)
            if design == "yesno":
                clean = trials * len(GRID)
                unit[0.0] = (int(rng.binomial(clean, guess)), clean)
            out.append(unit)
    spread = math.hypot(sd, sd_run)
    truth = group_threshold(family, centre + math.log(ratio), beta, spread) / group_threshold(
        family, centre, beta, spread
    )
    return units_a, units_b, truth


def one(design: str, index: int, ratio: float) -> dict[str, Any]:
    from backend.services.studies.comparison import compare_two

    family = FAMILIES[index % len(FAMILIES)]
    a, b, truth = simulate_pair(1000 + index, design=design, ratio=ratio, family=family)
    c = compare_two(a, b, design=design, grid=GRID, seed=index)["threshold_ratio"]
    lo = c["ci_low"] if c["ci_low"] is not None else 0.0
    hi = c["ci_high"] if c["ci_high"] is not None else math.inf
    return {
        "covered": c["value"] is not None and lo <= truth <= hi,
        "log_error": math.log(c["value"] / truth) if c["value"] else math.nan,
        "log_width": math.log(hi / lo) if lo > 0 and math.isfinite(hi) else math.inf,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", type=int, default=150)
    ap.add_argument("--ratio", type=float, default=1.5)
    args = ap.parse_args()
    started = time.perf_counter()
    line: dict[str, Any] = {"bench": "study_comparison", "ratio": args.ratio}
    for design in ("2afc", "yesno"):
        rows = [one(design, i, args.ratio) for i in range(args.datasets)]
        line[f"coverage_{design}"] = round(float(np.mean([r["covered"] for r in rows])), 3)
        line[f"median_log_error_{design}"] = round(
            float(np.nanmedian([r["log_error"] for r in rows])), 3
        )
        line[f"median_log_width_{design}"] = round(
            float(np.median([r["log_width"] for r in rows])), 3
        )
    line["datasets"] = args.datasets
    line["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(line))


if __name__ == "__main__":
    main()
