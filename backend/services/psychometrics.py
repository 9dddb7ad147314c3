"""Statistics of detection experiments: Wilson intervals, d' with the log-linear correction, and
a Weibull psychometric function fitted by maximum likelihood with a bootstrap threshold interval.

Plain numbers in, plain numbers out (no database), so it is tested on simulated observers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

Z95 = float(stats.norm.ppf(0.975))
# lapse rate bounds: a few percent of inattentive answers at most
MAX_LAPSE = 0.06


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k/n (n = 0 -> (0, 1))."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class DPrime:
    hit_rate: float  # corrected: (hits + 0.5) / (signal trials + 1)
    false_alarm_rate: float  # corrected: (false alarms + 0.5) / (noise trials + 1)
    d_prime: float
    ci_low: float
    ci_high: float


def d_prime(hits: int, n_signal: int, false_alarms: int, n_noise: int, z: float = Z95) -> DPrime:
    """d' = z(H) - z(F) with the log-linear correction (Hautus 1995): 0.5 added to each count
    and 1 to each total, so rates of 0 and 1 stay finite. The interval uses the usual
    delta-method variance H(1-H) / (N_s phi(z_H)^2) + F(1-F) / (N_n phi(z_F)^2)."""
    h = (hits + 0.5) / (n_signal + 1)
    f = (false_alarms + 0.5) / (n_noise + 1)
    zh, zf = float(stats.norm.ppf(h)), float(stats.norm.ppf(f))
    d = zh - zf
    var = h * (1 - h) / ((n_signal + 1) * stats.norm.pdf(zh) ** 2) + f * (1 - f) / (
        (n_noise + 1) * stats.norm.pdf(zf) ** 2
    )
    half = z * math.sqrt(var)
    return DPrime(h, f, d, d - half, d + half)


def weibull_p(x: np.ndarray, alpha: float, beta: float, guess: float, lapse: float) -> np.ndarray:
    """P(correct or "yes") at stimulus level x >= 0: guess + (1 - guess - lapse) * F(x),
    F(x) = 1 - exp(-(x / alpha) ** beta) (a cumulative Weibull: a logistic in log x)."""
    x = np.asarray(x, dtype=float)
    f = 1.0 - np.exp(-np.power(np.maximum(x, 0.0) / alpha, beta))
    p: np.ndarray = guess + (1.0 - guess - lapse) * f
    return p


@dataclass
class Fit:
    alpha: float  # Weibull scale, in the unit of x
    beta: float  # Weibull slope
    guess: float  # lower asymptote (0.5 for 2AFC; fitted false-alarm rate for yes/no)
    lapse: float  # 1 - upper asymptote
    threshold: float | None  # x at the criterion (None if the curve never reaches it)
    criterion: float  # the probability defining the threshold (0.75 for 2AFC)
    log_likelihood: float


def _threshold(
    alpha: float, beta: float, guess: float, lapse: float, criterion: float
) -> float | None:
    span = 1.0 - guess - lapse
    if span <= 0:
        return None
    f = (criterion - guess) / span
    if not 0 < f < 1:
        return None
    return float(alpha * (-math.log(1 - f)) ** (1 / beta))


def fit_weibull(
    x: Sequence[float],
    k: Sequence[int],
    n: Sequence[int],
    *,
    guess: float | None = 0.5,
    criterion: float | None = 0.75,
    start: Fit | None = None,
) -> Fit | None:
    """Maximum-likelihood Weibull fit to k successes out of n at levels x.

    guess: fixed lower asymptote (0.5 for 2AFC), or None to fit it (yes/no false-alarm rate).
    criterion: the probability that defines the threshold; None = halfway between the guess
    rate and the upper asymptote (F = 0.5), the usual yes/no choice.
    start: a previous fit to start from (one local search instead of a grid of starts; the
    bootstrap refits resamples of the same data this way).
    Returns None when there is nothing to fit (no positive level with trials).
    """
    xa, ka, na = (np.asarray(v, dtype=float) for v in (x, k, n))
    keep = na > 0
    xa, ka, na = xa[keep], ka[keep], na[keep]
    pos = xa[xa > 0]
    if pos.size == 0:
        return None
    lo, hi = float(pos.min()), float(pos.max())

    def unpack(theta: np.ndarray) -> tuple[float, float, float, float]:
        a, b, lam = math.exp(theta[0]), math.exp(theta[1]), float(theta[2])
        g = float(theta[3]) if guess is None else guess
        return a, b, g, lam

    def nll(theta: np.ndarray) -> float:
        a, b, g, lam = unpack(theta)
        p = np.clip(weibull_p(xa, a, b, g, lam), 1e-9, 1 - 1e-9)
        return float(-(ka * np.log(p) + (na - ka) * np.log(1 - p)).sum())

    bounds = [
        (math.log(lo / 20), math.log(hi * 20)),
        (math.log(0.3), math.log(12.0)),
        (0.0, MAX_LAPSE),
    ]
    if guess is None:
        bounds.append((0.0, 0.9))
    starts: list[list[float]] = []
    clean = ka[xa == 0].sum() / max(1.0, na[xa == 0].sum())
    if start is not None:
        starts.append([math.log(start.alpha), math.log(start.beta), start.lapse])
        if guess is None:
            starts[0].append(start.guess)
    else:
        # a few starting points: the likelihood surface has flat ridges at the grid's ends
        for a0 in np.geomspace(lo, hi, 4):
            for b0 in (1.0, 3.0):
                starts.append([math.log(a0), math.log(b0), 0.01])
                if guess is None:
                    starts[-1].append(float(min(0.85, max(0.01, clean))))
    best = None
    for s0 in starts:
        s0 = [min(max(v, b[0]), b[1]) for v, b in zip(s0, bounds, strict=True)]
        res = optimize.minimize(nll, np.array(s0), method="L-BFGS-B", bounds=bounds)
        if best is None or res.fun < best.fun:
            best = res
    assert best is not None
    a, b, g, lam = unpack(best.x)
    crit = criterion if criterion is not None else g + 0.5 * (1 - g - lam)
    return Fit(a, b, g, lam, _threshold(a, b, g, lam, crit), crit, -float(best.fun))


@dataclass
class BootstrapFit:
    fit: Fit | None
    ci_low: float | None
    ci_high: float | None
    n_boot: int
    n_failed: int  # resamples whose curve never reached the criterion


def bootstrap_threshold(
    per_unit: Sequence[dict[float, tuple[int, int]]],
    *,
    guess: float | None = 0.5,
    criterion: float | None = 0.75,
    n_boot: int = 200,
    seed: int = 0,
) -> BootstrapFit:
    """Fit the pooled data of `per_unit` (one {x: (k, n)} per participant) and a percentile
    bootstrap 95% interval of the threshold from resampling participants with replacement
    (the unit of replication in a perception study). Seeded: same input, same interval."""
    levels = sorted({x for unit in per_unit for x in unit})

    def pooled(units: Sequence[dict[float, tuple[int, int]]]) -> tuple[list[int], list[int]]:
        ks = [sum(u.get(x, (0, 0))[0] for u in units) for x in levels]
        ns = [sum(u.get(x, (0, 0))[1] for u in units) for x in levels]
        return ks, ns

    ks, ns = pooled(per_unit)
    fit = fit_weibull(levels, ks, ns, guess=guess, criterion=criterion) if levels else None
    if fit is None or len(per_unit) < 2 or n_boot <= 0:
        return BootstrapFit(fit, None, None, 0, 0)
    rng = np.random.default_rng(seed)
    thresholds: list[float] = []
    failed = 0
    m = len(per_unit)
    for _ in range(n_boot):
        pick = rng.integers(0, m, size=m)
        bk, bn = pooled([per_unit[i] for i in pick])
        bf = fit_weibull(levels, bk, bn, guess=guess, criterion=criterion, start=fit)
        if bf is None or bf.threshold is None:
            failed += 1
            # an unreachable threshold counts as "above every tested level"
            thresholds.append(math.inf)
        else:
            thresholds.append(bf.threshold)
    arr = np.sort(np.array(thresholds))
    lo = float(np.quantile(arr, 0.025, method="lower"))
    hi = float(np.quantile(arr, 0.975, method="higher"))
    return BootstrapFit(fit, lo, hi if math.isfinite(hi) else None, n_boot, failed)
