"""The statistics a claim about runs rests on (docs/methods.md: at least five seeds, the paired
difference with its 95 % interval), in one place for the API and the library's command line,
so that a sweep read in the app and one tabulated on a cluster give the same figures.

Standard library only: Student's t distribution from the regularised incomplete beta
function, a percentile bootstrap over seeds with a fixed seed (the same resamples on every
machine), and two one-sided tests (TOST) for equivalence within a margin the researcher sets.
"""

from __future__ import annotations

import math
import operator
import random
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

LEVEL = 0.95  # every interval's coverage
RESAMPLES = 2000  # bootstrap resamples of the seeds
BOOTSTRAP_SEED = 0  # fixed, so that the app and the command line draw the same resamples
TOST_ALPHA = 0.05  # each one-sided test's level (a 90 % interval inside the margin)


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _regularised_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularised incomplete beta function, for 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    # the fraction converges fast on the side of the mode; the other side by symmetry
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with df degrees of freedom."""
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * _regularised_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


@lru_cache(maxsize=256)
def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p (0 < p < 1), by bisection on t_cdf."""
    if not 0.0 < p < 1.0:
        raise ValueError("p must be in (0, 1)")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        low, high = high, high * 2.0
    for _ in range(200):
        middle = (low + high) / 2.0
        if t_cdf(middle, df) < p:
            low = middle
        else:
            high = middle
        if high - low <= 1e-13 * max(1.0, high):
            break
    return (low + high) / 2.0


@dataclass(frozen=True)
class Interval:
    """A mean over seeds with its interval (None where fewer than two values make none)."""

    mean: float
    low: float | None
    high: float | None
    n: int
    sd: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sd(values: Sequence[float]) -> float:
    """The sample standard deviation in floating point (statistics.stdev works in exact
    fractions, a hundred times slower; a page asks for thousands): exactly 0 when every value
    is the same."""
    first = values[0]
    if all(v == first for v in values):
        return 0.0
    mean = statistics.fmean(values)
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


def mean_interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """The mean with its Student t interval (n - 1 degrees of freedom)."""
    n = len(values)
    if n == 0:
        raise ValueError("no values")
    mean = statistics.fmean(values)
    if n < 2:
        return Interval(mean, None, None, n)
    sd = _sd(values)
    half = t_quantile(0.5 + level / 2.0, n - 1) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, sd)


@lru_cache(maxsize=64)
def _resamplers(n: int, resamples: int, seed: int) -> tuple[Callable[[Sequence[float]], Any], ...]:
    """The resamples of n seeds (drawn with replacement), each as a picker of n values; the
    same for every caller with the same n, so that every metric of a sweep is resampled
    alike."""
    rng = random.Random(seed)
    return tuple(operator.itemgetter(*rng.choices(range(n), k=n)) for _ in range(resamples))


def _percentile(ordered: Sequence[float], q: float) -> float:
    """The q-th quantile (0..1) of sorted values, interpolated linearly between ranks."""
    position = q * (len(ordered) - 1)
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def bootstrap_interval(
    values: Sequence[float],
    level: float = LEVEL,
    resamples: int = RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float] | None:
    """The percentile bootstrap interval of the mean: the seeds resampled with replacement,
    `resamples` times from a generator seeded with `seed`; None for fewer than two values."""
    if len(values) < 2:
        return None
    return _bootstrap(tuple(values), level, resamples, seed)


@lru_cache(maxsize=8192)
def _bootstrap(
    values: tuple[float, ...], level: float, resamples: int, seed: int
) -> tuple[float, float]:
    """bootstrap_interval, remembered: a sweep's page asks again for the same seeds' figures
    at every poll while its other runs train."""
    n = len(values)
    means = sorted(sum(pick(values)) / n for pick in _resamplers(n, resamples, seed))
    tail = (1.0 - level) / 2.0
    return _percentile(means, tail), _percentile(means, 1.0 - tail)


@dataclass(frozen=True)
class Paired:
    """One arm minus the baseline, paired by seed: the mean difference with its Student t
    interval and its percentile bootstrap interval, over the seeds both have."""

    mean: float
    low: float | None
    high: float | None
    boot_low: float | None
    boot_high: float | None
    n: int
    seeds: tuple[Any, ...]

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["seeds"] = list(self.seeds)
        return out


def paired_difference(
    arm: Mapping[Any, float], baseline: Mapping[Any, float], level: float = LEVEL
) -> Paired | None:
    """arm - baseline over the seeds both have (sorted), or None when they share none."""
    seeds = tuple(sorted(set(arm) & set(baseline), key=lambda s: (str(type(s)), s)))
    if not seeds:
        return None
    differences = [arm[s] - baseline[s] for s in seeds]
    t = mean_interval(differences, level)
    boot = bootstrap_interval(differences, level)
    return Paired(
        t.mean,
        t.low,
        t.high,
        boot[0] if boot else None,
        boot[1] if boot else None,
        len(seeds),
        seeds,
    )


def tost_p(differences: Sequence[float], margin: float) -> float | None:
    """The p value of two one-sided tests that the mean difference lies within (-margin,
    +margin): the larger of the two one-sided p values; None for fewer than two values."""
    n = len(differences)
    if n < 2 or margin <= 0:
        return None
    mean = statistics.fmean(differences)
    se = _sd(differences) / math.sqrt(n)
    if se == 0.0:
        return 0.0 if abs(mean) < margin else 1.0
    above_lower = 1.0 - t_cdf((mean + margin) / se, n - 1)
    below_upper = t_cdf((mean - margin) / se, n - 1)
    return max(above_lower, below_upper)


EQUIVALENT = "equivalent"
DIFFERS = "differs"
NOT_SHOWN = "not shown to differ"


def verdict(
    differences: Sequence[float], margin_points: float | None, scale: float = 100.0
) -> dict[str, Any]:
    """What may be said of a paired difference: "equivalent within ±m points" only when both
    one-sided tests reject a difference of m or more (a margin the researcher set; values are
    shares, `scale` points each); else "differs" when the 95 % interval excludes 0, or "not
    shown to differ" (which is not equivalence)."""
    t = mean_interval(differences) if differences else None
    differs = False
    if t is not None and t.low is not None and t.high is not None:
        differs = t.low > 0 or t.high < 0
    margin = margin_points / scale if margin_points else None
    p = tost_p(differences, margin) if margin else None
    equivalent = p is not None and p < TOST_ALPHA
    shown = f"{margin_points:g}" if margin_points else ""
    if equivalent:
        kind, text = EQUIVALENT, f"equivalent within ±{shown} points"
        if differs:
            text += " (the interval excludes 0: it differs, by less than the margin)"
    elif differs:
        kind, text = DIFFERS, DIFFERS
    else:
        kind, text = NOT_SHOWN, NOT_SHOWN
    if margin and not equivalent:
        text += f"; not shown equivalent within ±{shown} points"
    return {"verdict": kind, "text": text, "margin_points": margin_points, "tost_p": p}
