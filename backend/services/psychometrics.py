"""Statistics of detection experiments, from the participant level up.

- Psychometric functions are fitted with psignifit 4 (Schuett, Harmeling, Macke and Wichmann
  2016): a Weibull in epsilon (a Gumbel in log epsilon), its default priors, a beta-binomial
  overdispersion term (eta) and credible intervals from the posterior grid. Each participant's
  trials at a level are one block, so eta absorbs what participants differ by and the
  threshold's interval is one over participants, not over trials pooled as if independent.
- Per-point rates, d' and the criterion c get intervals from a bootstrap over participants
  (`N_BOOT` resamples).
- Everything here is plain numbers in, plain numbers out (no database), so it is tested on
  simulated observers and benchmarked by backend/benchmarks/study_design.py.

The threshold is where the sigmoid is halfway between its lower asymptote (chance in 2AFC,
the false-alarm rate in yes/no) and its upper asymptote (1 - lapse): 75 % correct in 2AFC
when nobody lapses. psignifit defines it so, and it does not move with the lapse rate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

# scalar normal quantiles from the standard library: scipy.stats costs the API 0.4 s at start
_NORMAL = NormalDist()
Z95 = _NORMAL.inv_cdf(0.975)
N_BOOT = 2000  # participant resamples behind every per-point interval
POSTERIOR_SAMPLES = 2000  # draws from psignifit's posterior grid for derived quantities
MIN_PARTICIPANTS = 10  # a group fit from fewer is flagged: its interval may be too narrow
# a participant gets a fit of their own with at least this many trials over 3+ levels
MIN_TRIALS_OWN_FIT = 40
MAX_LAPSE = 0.2  # the lapse rate's upper bound (beyond it the task was not being done)
# the prior on overdispersion, Beta(1, k) over eta: psignifit's default k = 10 expects blocks
# of one observer that scatter little (kept for a participant's own fit); in a group fit a
# block is one participant, and people differ, so the prior is flat (k = 1) and the data set eta
ETA_PRIOR_BETA_GROUP = 1
ETA_PRIOR_BETA_OWN = 10
# the yes/no clean trials (epsilon 0) sit this far (natural-log units) below the lowest
# tested level: the Weibull there is below 0.3 % of its span for every slope psignifit allows
CLEAN_OFFSET = 12.0
# psignifit's width is the log-epsilon distance between 5 % and 95 % of the sigmoid; the
# Weibull's slope (shape) beta is this constant over the width
_WIDTH_ALPHA = 0.05
WIDTH_PER_SLOPE = float(math.log(-math.log(_WIDTH_ALPHA)) - math.log(-math.log(1 - _WIDTH_ALPHA)))
# psignifit's posterior grids, fixed here (its defaults are 40 x 40 x 20 x 20 after a 30 x 40
# x 10 x 20 search): one fit per participant block costs the grid size times the blocks, and
# these keep a 20-participant group fit near a second on one core with the same intervals to
# within a grid step (backend/benchmarks/study_design.py measures coverage with them)
GRID_STEPS = {"threshold": 30, "width": 30, "lambda": 12, "gamma": 1, "eta": 12}
MOVING_STEPS = {"threshold": 20, "width": 20, "lambda": 8, "gamma": 1, "eta": 10}
# yes/no adds the guess rate as a fifth dimension: fewer steps on the three nuisance ones
GRID_STEPS_YESNO = {"threshold": 24, "width": 20, "lambda": 8, "gamma": 8, "eta": 8}
MOVING_STEPS_YESNO = {"threshold": 15, "width": 15, "lambda": 6, "gamma": 6, "eta": 6}

Design = Literal["2afc", "yesno"]


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k/n (n = 0 -> (0, 1))."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # at k = 0 (k = n) the bound is 0 (1) exactly; rounding must not move it off
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return lo, hi


@dataclass
class DPrime:
    hit_rate: float  # corrected: (hits + 0.5) / (signal trials + 1)
    false_alarm_rate: float  # corrected: (false alarms + 0.5) / (noise trials + 1)
    d_prime: float
    ci_low: float
    ci_high: float
    criterion: float = 0.0  # c = -(z(H) + z(F)) / 2 (0: no bias; > 0: conservative)


def d_prime(hits: int, n_signal: int, false_alarms: int, n_noise: int, z: float = Z95) -> DPrime:
    """d' = z(H) - z(F) with the log-linear correction (Hautus 1995): 0.5 added to each count
    and 1 to each total, so rates of 0 and 1 stay finite. The interval uses the usual
    delta-method variance H(1-H) / (N_s phi(z_H)^2) + F(1-F) / (N_n phi(z_F)^2): one
    participant's trials; a group's d' comes from `point_statistics`, over participants."""
    h = (hits + 0.5) / (n_signal + 1)
    f = (false_alarms + 0.5) / (n_noise + 1)
    zh, zf = _NORMAL.inv_cdf(h), _NORMAL.inv_cdf(f)
    d = zh - zf
    var = h * (1 - h) / ((n_signal + 1) * _NORMAL.pdf(zh) ** 2) + f * (1 - f) / (
        (n_noise + 1) * _NORMAL.pdf(zf) ** 2
    )
    half = z * math.sqrt(var)
    return DPrime(h, f, d, d - half, d + half, -(zh + zf) / 2)


# ------------------------------------------------------------------ per-point, over participants


@dataclass
class PointStat:
    """One statistic at one level, with its 95 % interval over participants."""

    value: float | None
    ci_low: float | None
    ci_high: float | None


def rate_over_participants(
    k: Sequence[int], n: Sequence[int], *, n_boot: int = N_BOOT, seed: int = 0
) -> PointStat:
    """The pooled rate sum(k) / sum(n) of participants' counts at one level, with a percentile
    bootstrap interval from resampling participants (n_boot resamples). The interval is never
    narrower than the Wilson interval of the pooled trials (the binomial floor: with three
    participants who all got every trial right the resamples alone would say [1, 1]). One
    participant: the Wilson interval of their trials."""
    ka, na = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    keep = na > 0
    ka, na = ka[keep], na[keep]
    total = float(na.sum())
    if total == 0:
        return PointStat(None, None, None)
    rate = float(ka.sum()) / total
    w_lo, w_hi = wilson_interval(int(ka.sum()), int(total))
    if ka.size < 2:
        return PointStat(rate, w_lo, w_hi)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, ka.size, size=(n_boot, ka.size))
    rates = ka[pick].sum(axis=1) / na[pick].sum(axis=1)
    lo, hi = np.quantile(rates, [0.025, 0.975])
    return PointStat(rate, min(float(lo), w_lo), max(float(hi), w_hi))


def mean_over_participants(
    values: Sequence[float], *, n_boot: int = N_BOOT, seed: int = 0
) -> PointStat:
    """The mean of per-participant values with a percentile bootstrap interval over
    participants (none for fewer than two)."""
    v = np.asarray([x for x in values if math.isfinite(x)], dtype=float)
    if v.size == 0:
        return PointStat(None, None, None)
    if v.size < 2:
        return PointStat(float(v.mean()), None, None)
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    return PointStat(float(v.mean()), float(lo), float(hi))


@dataclass
class YesNoPoint:
    hit_rate: PointStat
    d_prime: PointStat  # mean of the participants' own d' (log-linear corrected)
    criterion: PointStat  # mean of the participants' own c


def yes_no_point(
    hits: Sequence[int],
    n_signal: Sequence[int],
    false_alarms: Sequence[int],
    n_noise: Sequence[int],
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> YesNoPoint:
    """Hit rate, d' and c at one level, each participant's own (their hits at this level
    against their own clean trials of the run), with intervals over participants. Averaging
    each person's d' rather than pooling trials keeps d' from being pulled down when
    participants' criteria differ (a pooled false-alarm rate mixes liberal and conservative
    people)."""
    ds: list[float] = []
    cs: list[float] = []
    for h, ns, f, nn in zip(hits, n_signal, false_alarms, n_noise, strict=True):
        if ns > 0 and nn > 0:
            one = d_prime(h, ns, f, nn)
            ds.append(one.d_prime)
            cs.append(one.criterion)
    return YesNoPoint(
        rate_over_participants(hits, n_signal, n_boot=n_boot, seed=seed),
        mean_over_participants(ds, n_boot=n_boot, seed=seed + 1),
        mean_over_participants(cs, n_boot=n_boot, seed=seed + 2),
    )


# ------------------------------------------------------------------------- psignifit fits


def _log_weibull_sigmoid() -> Any:
    """psignifit's Weibull (a Gumbel in log epsilon), with its cdf, pdf and inverse in closed
    form: the same function as psignifit's 'weibull', about three times faster to evaluate
    than through scipy.stats, which dominates a fit's time."""
    from psignifit import sigmoids

    class LogWeibull(sigmoids.Sigmoid):  # type: ignore[misc]
        def _standard_parameters(self, threshold: Any, width: Any) -> list[Any]:
            scale = width / (np.log(-np.log(self.alpha)) - np.log(-np.log(1 - self.alpha)))
            return [threshold - scale * np.log(-np.log(1 - self._PC)), scale]

        def _cdf(self, x: Any, loc: Any = 0, scale: Any = 1) -> Any:
            return -np.expm1(-np.exp((x - loc) / scale))

        def _pdf(self, x: Any, loc: Any = 0, scale: Any = 1) -> Any:
            z = (x - loc) / scale
            return np.exp(z - np.exp(z)) / scale

        def _ppf(self, p: Any, loc: Any = 0, scale: Any = 1) -> Any:
            return loc + scale * np.log(-np.log1p(-p))

    return LogWeibull(PC=0.5, alpha=_WIDTH_ALPHA)


@dataclass
class CurveFit:
    """One psychometric function fitted by psignifit, in grey levels (epsilon x 255)."""

    design: str
    threshold: float  # MAP threshold (halfway between the asymptotes), grey levels
    threshold_ci: tuple[float, float]  # 95 % credible interval
    alpha: float  # Weibull scale (grey levels): F(x) = 1 - exp(-(x / alpha) ** beta)
    beta: float  # Weibull slope (shape)
    beta_ci: tuple[float, float]
    guess: float  # lower asymptote: 0.5 in 2AFC, the false-alarm rate in yes/no
    guess_ci: tuple[float, float]
    lapse: float  # 1 - upper asymptote
    lapse_ci: tuple[float, float]
    eta: float  # overdispersion (0: binomial; the sd of block rates around the curve)
    eta_ci: tuple[float, float]
    deviance: float  # binomial deviance of the MAP curve over the blocks
    deviance_p: float  # posterior predictive p: share of replicated deviances at least as big
    n_blocks: int
    n_trials: int
    n_participants: int
    flags: list[str] = field(default_factory=list)
    # yes/no only: the criterion-free threshold, where d' (equal-variance) reaches 1 against
    # the fitted false-alarm rate; None where the fitted curve never reaches it
    threshold_d1: float | None = None
    threshold_d1_ci: tuple[float | None, float | None] = (None, None)

    def p(self, x: np.ndarray) -> np.ndarray:
        """P(correct or "yes") at grey levels x >= 0."""
        xa = np.maximum(np.asarray(x, dtype=float), 0.0)
        f = -np.expm1(-np.power(xa / self.alpha, self.beta))
        out: np.ndarray = self.guess + (1 - self.guess - self.lapse) * f
        return out


def _as_rows(
    blocks: Sequence[tuple[float, int, int]], design: Design, lowest: float
) -> np.ndarray | None:
    rows = []
    for level, k, n in blocks:
        if n <= 0:
            continue
        if level <= 0:
            if design == "2afc":
                continue  # identical images: chance by construction, nothing to fit
            x = math.log(lowest) - CLEAN_OFFSET
        else:
            x = math.log(level)
        rows.append((x, float(k), float(n)))
    return np.array(rows, dtype=float) if rows else None


def _deviance(k: np.ndarray, n: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Binomial deviance of counts k of n against probabilities p (last axis summed)."""
    p = np.clip(p, 1e-12, 1 - 1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(k > 0, k * np.log(k / (n * p)), 0.0)
        b = np.where(n - k > 0, (n - k) * np.log((n - k) / (n * (1 - p))), 0.0)
    out: np.ndarray = 2 * (a + b).sum(axis=-1)
    return out


def credible_intervals(
    posterior: np.ndarray, grid: Mapping[str, np.ndarray | None], level: float = 0.95
) -> dict[str, tuple[float, float]]:
    """Each fitted parameter's equal-tailed credible interval from psignifit's posterior mass
    on its grid (axes in the grid's sorted names, as psignifit keeps them). The marginal is
    read as psignifit integrates it, by the trapezoid rule: the distribution function at a
    grid point is the mass below it plus half its own (0 and 1 at the grid's ends).
    psignifit's own percentile intervals count a point's whole mass below it, which sets
    both bounds about half a grid step low; on the default yes/no design's grid, 183 of 200
    simulated studies' threshold intervals held the true threshold that way, 186 this way
    (backend/benchmarks/study_design.py)."""
    mass = np.asarray(posterior, dtype=float)
    names = sorted(grid)
    tail = (1 - level) / 2
    out: dict[str, tuple[float, float]] = {}
    for axis, name in enumerate(names):
        values = grid[name]
        if values is None or len(values) < 2:
            continue  # a fixed parameter
        others = tuple(a for a in range(mass.ndim) if a != axis)
        marginal = mass.sum(axis=others)
        marginal = marginal / marginal.sum()
        cdf = np.cumsum(marginal) - marginal / 2
        cdf[0], cdf[-1] = 0.0, 1.0
        lo, hi = np.interp([tail, 1 - tail], cdf, np.asarray(values, dtype=float))
        out[name] = (float(lo), float(hi))
    return out


def fit_curve(
    blocks: Sequence[tuple[float, int, int]],
    *,
    design: Design,
    grid: Sequence[float],
    n_participants: int,
    seed: int = 0,
    samples: int = POSTERIOR_SAMPLES,
    group: bool = True,
) -> CurveFit | None:
    """psignifit's fit of (level in grey levels, k, n) blocks: one block per participant and
    level for a group, one per level for a participant. `grid` holds the design's tested
    levels; the positive ones set psignifit's priors (the threshold's prior spans them). In
    yes/no, k counts "yes" and level-0 blocks are the clean trials (they fix the lower
    asymptote); in 2AFC, k counts correct answers and level 0 is left out (two identical
    images say nothing about the curve). Blocks above the grid (the catch level) constrain
    the upper asymptote. `group`: a group's fit (flagged below MIN_PARTICIPANTS), else one
    participant's. None when fewer than two positive levels hold trials."""
    import psignifit

    positive = sorted({float(e) for e in grid if e > 0})
    used = sorted({float(b[0]) for b in blocks if b[0] > 0 and b[2] > 0})
    if len(positive) < 2 or len(used) < 2:
        return None
    data = _as_rows(blocks, design, positive[0])
    if data is None:
        return None
    logs = np.log(positive)
    width_min = float(np.diff(logs).min())
    fit = psignifit.psignifit(
        data,
        experiment_type="2AFC" if design == "2afc" else "yes/no",
        sigmoid=_log_weibull_sigmoid(),
        stimulus_range=(float(logs[0]), float(logs[-1])),
        width_min=width_min,
        bounds={"lambda": (0.0, MAX_LAPSE)},
        beta_prior=ETA_PRIOR_BETA_GROUP if group else ETA_PRIOR_BETA_OWN,
        grid_steps=dict(GRID_STEPS if design == "2afc" else GRID_STEPS_YESNO),
        steps_moving_bounds=dict(MOVING_STEPS if design == "2afc" else MOVING_STEPS_YESNO),
        pool_max_blocks=10**9,
        verbose=False,
        debug=True,
    )
    est = fit.parameter_estimate_MAP
    ci = credible_intervals(fit.debug["posteriors"], fit.parameter_values)
    spread = float(logs[-1] - logs[0])

    def interval(name: str, default: float) -> tuple[float, float]:
        lo, hi = ci.get(name, (default, default))
        return float(lo), float(hi)

    t_lo, t_hi = interval("threshold", est["threshold"])
    w_lo, w_hi = interval("width", est["width"])
    scale = float(est["width"]) / WIDTH_PER_SLOPE
    loc = float(est["threshold"]) - scale * math.log(math.log(2))
    gamma = float(est["gamma"])
    lam = float(est["lambda"])
    # goodness of fit: the observed deviance against deviances of data replicated from
    # posterior draws (beta-binomial with each draw's eta), each against its own draw's curve
    rng = np.random.default_rng(seed)
    draws = fit.posterior_samples(samples, random_state=rng)
    sig = _log_weibull_sigmoid()
    x, k, n = data[:, 0], data[:, 1], data[:, 2]
    g_draw = np.broadcast_to(np.asarray(draws.get("gamma", gamma), dtype=float), (samples,))
    psi = sig(
        x[None, :],
        draws["threshold"][:, None],
        draws["width"][:, None],
        g_draw[:, None],
        draws["lambda"][:, None],
    )
    psi = np.clip(np.asarray(psi, dtype=float), 1e-9, 1 - 1e-9)
    eta = np.clip(draws["eta"][:, None], 1e-6, 1 - 1e-6)
    conc = 1 / eta**2 - 1
    block_p = rng.beta(psi * conc, (1 - psi) * conc)
    k_rep = rng.binomial(n[None, :].astype(np.int64), block_p)
    d_rep = _deviance(k_rep.astype(float), n[None, :], psi)
    d_obs_draw = _deviance(k[None, :], n[None, :], psi)
    deviance_p = float((d_rep >= d_obs_draw).mean())
    psi_map = np.asarray(sig(x, est["threshold"], est["width"], gamma, lam), dtype=float)
    deviance = float(_deviance(k, n, psi_map))

    out = CurveFit(
        design=design,
        threshold=math.exp(float(est["threshold"])),
        threshold_ci=(math.exp(t_lo), math.exp(t_hi)),
        alpha=math.exp(loc),
        beta=1 / scale,
        beta_ci=(WIDTH_PER_SLOPE / w_hi, WIDTH_PER_SLOPE / w_lo),
        guess=gamma,
        guess_ci=interval("gamma", gamma),
        lapse=lam,
        lapse_ci=interval("lambda", lam),
        eta=float(est["eta"]),
        eta_ci=interval("eta", float(est["eta"])),
        deviance=deviance,
        deviance_p=deviance_p,
        n_blocks=int(len(data)),
        n_trials=int(n.sum()),
        n_participants=n_participants,
    )
    if design == "yesno":
        out.threshold_d1, out.threshold_d1_ci = _d_prime_one(est, draws, sig)
    # whether an interval reaches a bound is read as psignifit reads it: its percentile
    # interval ends at the grid's end once the end point holds the tail's mass
    at_bounds = {
        k: (float(v["0.95"][0]), float(v["0.95"][1])) for k, v in fit.confidence_intervals.items()
    }
    out.flags = _flags(out, width_bounds=(width_min, 3 * spread), bound_ci=at_bounds, group=group)
    return out


def _d_prime_one(
    est: Mapping[str, float], draws: Mapping[str, np.ndarray], sig: Any
) -> tuple[float | None, tuple[float | None, float | None]]:
    """Where d' = z(P(yes | x)) - z(false-alarm rate) reaches 1, for the MAP and for each
    posterior draw (an unreached level counts as above every level)."""

    from scipy import special

    def level(thr: np.ndarray, width: np.ndarray, g: np.ndarray, lam: np.ndarray) -> np.ndarray:
        target = special.ndtr(special.ndtri(np.clip(g, 1e-6, 1 - 1e-6)) + 1.0)
        ok = target < 1 - lam - 1e-9
        frac = np.where(ok, (target - g) / np.maximum(1 - g - lam, 1e-9), 0.5)
        x = np.asarray(sig._inverse(np.clip(frac, 1e-9, 1 - 1e-9), thr, width), dtype=float)
        return np.where(ok, np.exp(x), np.inf)

    point = level(
        *(np.array([est[p]], dtype=float) for p in ("threshold", "width", "gamma", "lambda"))
    )
    many = level(draws["threshold"], draws["width"], draws["gamma"], draws["lambda"])
    lo, hi = np.quantile(many, [0.025, 0.975])
    finite = [float(v) if math.isfinite(v) else None for v in (point[0], lo, hi)]
    return finite[0], (finite[1], finite[2])


def _flags(
    f: CurveFit,
    *,
    width_bounds: tuple[float, float],
    bound_ci: Mapping[str, tuple[float, float]],
    group: bool,
) -> list[str]:
    """What a reader of the fit must know, in words. `bound_ci`: psignifit's own 95 %
    percentile intervals, by parameter name, for whether a parameter sits at a bound."""
    w_ci = bound_ci["width"]
    lapse_hi = bound_ci.get("lambda", f.lapse_ci)[1]
    guess_hi = bound_ci.get("gamma", f.guess_ci)[1]
    out: list[str] = []
    if group and f.n_participants < MIN_PARTICIPANTS:
        people = "participant" if f.n_participants == 1 else "participants"
        out.append(
            f"Only {f.n_participants} {people}: this analysis asks for at least "
            f"{MIN_PARTICIPANTS}; with fewer, the threshold's interval may be too narrow."
        )
    lo_w, hi_w = width_bounds
    # the width's interval reaching a bound of its prior: the data do not pin the slope down
    if w_ci[0] <= lo_w * 1.05:
        out.append(
            f"The slope is at its upper bound (beta {f.beta:.1f}): the curve rises within one "
            "step of the epsilon grid, so the data cannot tell how steep it is; a finer grid "
            "around the threshold would."
        )
    elif w_ci[1] >= hi_w * 0.95:
        out.append(
            f"The slope is at its lower bound (beta {f.beta:.2f}): the curve is nearly flat "
            "over the tested epsilons, so the data do not fix its slope."
        )
    # (psignifit's MAP search is unbounded and may end past the grid's bound)
    if lapse_hi >= MAX_LAPSE * 0.95 or f.lapse >= MAX_LAPSE * 0.95:
        out.append(
            f"The lapse rate sits at its bound ({MAX_LAPSE:.0%}): the answers at the largest "
            "epsilons are often wrong, so the upper asymptote is not measured."
        )
    if f.design == "yesno" and guess_hi >= 0.5 * 0.95:
        out.append(
            "The false-alarm rate sits at its bound (50 %): participants said yes to clean "
            "images so often that the lower asymptote is not measured."
        )
    if f.deviance_p < 0.05:
        out.append(
            f"The curve fits poorly (posterior predictive p = {f.deviance_p:.3f}): the "
            "answers depart from a Weibull more than the fitted overdispersion allows."
        )
    return out


def blocks_of(
    per_participant: Sequence[Mapping[float, tuple[int, int]]],
) -> list[tuple[float, int, int]]:
    """One (level, k, n) block per participant and level."""
    return [(x, k, n) for unit in per_participant for x, (k, n) in unit.items() if n > 0]


def can_fit_own(unit: Mapping[float, tuple[int, int]], design: Design) -> bool:
    """Whether one participant's trials allow a fit of their own: at least
    MIN_TRIALS_OWN_FIT trials over at least three positive levels (yes/no: clean trials too)."""
    positive = [x for x, (_, n) in unit.items() if x > 0 and n > 0]
    total = sum(n for _, n in unit.values())
    if design == "yesno" and not any(x <= 0 and n > 0 for x, (_, n) in unit.items()):
        return False
    return len(positive) >= 3 and total >= MIN_TRIALS_OWN_FIT


# ----------------------------------------------------- two runs seen by the same participants

# The comparison of two runs of one study resamples the participants who saw both: each
# resample draws them with replacement and keeps every drawn participant's trials of both runs,
# so what a participant brings to both (their eyes, screen, distance, care) stays paired, and
# each resample's two thresholds are fitted again. psignifit takes a second or more per fit, too
# long for thousands of refits, so these fits are maximum likelihood on a fixed grid (the same
# Weibull, lapse at most MAX_LAPSE, the slope within psignifit's width bounds), vectorised over
# the resamples: no start value, so no refit gets stuck.
PAIRED_BOOT = 2000
GRID_LOG_STEP = 0.04  # threshold grid step in ln epsilon (4 %), then refined
GRID_REACH = math.log(4)  # how far (ln) the threshold grid reaches past the tested levels
GRID_SLOPES = 14  # Weibull slopes, log-spaced between the width bounds psignifit uses
GRID_LAPSES = (0.0, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.2)
GAMMA_STEP = 0.005  # yes/no: each resample's false-alarm rate, rounded to this step
GRID_REFINE = 24  # pattern-search moves after the grid (the step halves where none helps)
_CHUNK = 256  # resamples per block of the likelihood matrix


def resample_weights(n_people: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot + 1) x n_people: how often each participant is drawn in each resample; row 0
    is the data as they are (every participant once)."""
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, n_people, size=(n_boot, n_people))
    w = np.zeros((n_boot + 1, n_people))
    w[0] = 1.0
    np.add.at(w, (np.repeat(np.arange(1, n_boot + 1), n_people), pick.ravel()), 1.0)
    return w


def count_matrix(
    units: Sequence[Mapping[float, tuple[int, int]]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(levels, K, N): the levels that hold trials, ascending, and participants x levels
    counts (k of n at each level, 0 of 0 where a participant had none)."""
    levels = np.array(sorted({float(x) for u in units for x, (_, n) in u.items() if n > 0}))
    k = np.zeros((len(units), len(levels)))
    n = np.zeros((len(units), len(levels)))
    where = {x: i for i, x in enumerate(levels.tolist())}
    for p, u in enumerate(units):
        for x, (kk, nn) in u.items():
            if nn > 0:
                k[p, where[float(x)]] += kk
                n[p, where[float(x)]] += nn
    return levels, k, n


def _loglik(
    kb: np.ndarray,
    nb: np.ndarray,
    gamma: np.ndarray,
    x: np.ndarray,
    u: np.ndarray,
    log_slope: np.ndarray,
    lapse: np.ndarray,
) -> np.ndarray:
    """Binomial log likelihood (B x C) of each resample's pooled counts kb, nb (B x L, at ln
    levels x) under C candidate Weibulls per resample (u: ln threshold, B x C, and so on)."""
    with np.errstate(over="ignore"):
        z = np.exp(np.exp(log_slope)[..., None] * (x - u[..., None]))
    f = -np.expm1(-math.log(2) * z)
    g = gamma[:, None, None]
    p = np.clip(g + (1 - g - lapse[..., None]) * f, 1e-9, 1 - 1e-9)
    out: np.ndarray = (kb[:, None, :] * np.log(p) + (nb - kb)[:, None, :] * np.log1p(-p)).sum(-1)
    return out


def ml_log_thresholds(
    units: Sequence[Mapping[float, tuple[int, int]]],
    weights: np.ndarray,
    *,
    design: Design,
    grid: Sequence[float],
) -> np.ndarray:
    """ln threshold (grey levels) of the pooled trials of each resample (one per row of
    `weights`, as resample_weights gives them): the Weibull's maximum likelihood (the
    threshold halfway between the asymptotes, as psignifit's), found on a grid of threshold x
    slope x lapse for all resamples at once, then refined per resample by a pattern search
    within the same bounds (GRID_REFINE moves to the best of the 27 points around, the steps
    halved whenever none of them is better). -inf or +inf where the grid's maximum sits at
    its lower or upper end (GRID_REACH past the tested levels: the data put the threshold
    there or beyond). In yes/no the lower asymptote is the resample's false-alarm rate from
    its clean trials ((k + 0.5) / (n + 1), rounded to GAMMA_STEP); in 2AFC it is 0.5. Levels
    above the grid (catch trials) inform the lapse."""
    positive = sorted({float(e) for e in grid if e > 0})
    levels, k, n = count_matrix(units)
    if len(positive) < 2 or not len(levels):
        return np.full(len(weights), np.nan)
    kb, nb = weights @ k, weights @ n
    clean = levels <= 0
    if design == "2afc":
        gamma = np.full(len(weights), 0.5)
    else:
        if not clean.any():
            return np.full(len(weights), np.nan)
        g = (kb[:, clean].sum(1) + 0.5) / (nb[:, clean].sum(1) + 1)
        gamma = np.clip(np.round(g / GAMMA_STEP) * GAMMA_STEP, GAMMA_STEP, 0.5)
    x = np.log(levels[~clean])
    kb, nb = kb[:, ~clean], nb[:, ~clean]
    logs = np.log(positive)
    width_min = float(np.diff(logs).min())
    spread = float(logs[-1] - logs[0])
    u = np.arange(logs[0] - GRID_REACH, logs[-1] + GRID_REACH + 1e-9, GRID_LOG_STEP)
    slopes = np.geomspace(WIDTH_PER_SLOPE / (3 * spread), WIDTH_PER_SLOPE / width_min, GRID_SLOPES)
    lapses = np.asarray(GRID_LAPSES)
    # F at each (threshold, slope, level): 0.5 at the threshold
    f = -np.expm1(
        -math.log(2) * np.exp(slopes[None, :, None] * (x[None, None, :] - u[:, None, None]))
    )
    best = np.empty(len(weights), dtype=np.int64)
    for g in np.unique(gamma):
        rows = np.flatnonzero(gamma == g)
        p = g + (1 - g - lapses[None, None, :, None]) * f[:, :, None, :]
        p = np.clip(p, 1e-9, 1 - 1e-9).reshape(-1, len(x))
        lp, lq = np.log(p).T, np.log1p(-p).T
        for start in range(0, len(rows), _CHUNK):
            r = rows[start : start + _CHUNK]
            best[r] = (kb[r] @ lp + (nb[r] - kb[r]) @ lq).argmax(axis=1)
    i_u, i_s, i_l = np.unravel_index(best, (len(u), len(slopes), len(lapses)))
    edge = np.where(i_u == 0, -np.inf, np.where(i_u == len(u) - 1, np.inf, 0.0))
    # the pattern search: from the grid's best point, each step tries the 27 points around
    bounds = [(u[0], u[-1]), (math.log(slopes[0]), math.log(slopes[-1])), (0.0, MAX_LAPSE)]
    at = np.stack([u[i_u], np.log(slopes[i_s]), lapses[i_l]], axis=1)
    step = np.tile([GRID_LOG_STEP, math.log(slopes[1] / slopes[0]), 0.02], (len(at), 1))
    moves = np.array(np.meshgrid([-1, 0, 1], [-1, 0, 1], [-1, 0, 1])).reshape(3, -1).T
    stay = int(np.flatnonzero((moves == 0).all(axis=1))[0])
    for _ in range(GRID_REFINE):
        cand = at[:, None, :] + moves[None, :, :] * step[:, None, :]
        for d, (lo, hi) in enumerate(bounds):
            cand[..., d] = np.clip(cand[..., d], lo, hi)
        ll = _loglik(kb, nb, gamma, x, cand[..., 0], cand[..., 1], cand[..., 2])
        # a neighbour strictly better, or stay (a neighbour clipped onto a bound is the same
        # point) and look closer
        better = ll.max(axis=1) > ll[:, stay] + 1e-9
        pick = np.where(better, ll.argmax(axis=1), stay)
        at = cand[np.arange(len(at)), pick]
        step[~better] /= 2
    out: np.ndarray = np.where(edge == 0, at[:, 0], edge)
    return out


def _percentile_interval(values: np.ndarray) -> tuple[float, float]:
    """2.5 and 97.5 % of the finite-or-infinite values (nan dropped), by the inverted cdf, so
    that an infinite end stays infinite rather than turning nan."""
    v = np.sort(values[~np.isnan(values)])
    if not v.size:
        return math.nan, math.nan
    lo, hi = np.quantile(v, [0.025, 0.975], method="inverted_cdf")
    return float(lo), float(hi)


@dataclass
class PairedRatio:
    """Run b's threshold over run a's from the same participants (grid maximum likelihood),
    with a 95 % percentile interval over paired participant resamples."""

    ratio: float | None  # None when either threshold ran off the grid (GRID_REACH)
    ci_low: float | None  # None: unbounded below (0)
    ci_high: float | None  # None: unbounded above
    threshold_a: float | None  # grey levels; 0 or inf off the grid's ends, None: no fit
    threshold_b: float | None
    off_grid: float  # share of resamples in which either threshold ran off the grid
    n_participants: int
    n_boot: int


def paired_threshold_ratio(
    units_a: Sequence[Mapping[float, tuple[int, int]]],
    units_b: Sequence[Mapping[float, tuple[int, int]]],
    *,
    design: Design,
    grid: Sequence[float],
    n_boot: int = PAIRED_BOOT,
    seed: int = 0,
) -> PairedRatio:
    """The ratio of run b's threshold to run a's, units_a[i] and units_b[i] being one
    participant's counts in the two runs: both runs refitted on every resample of the
    participants (resample_weights), the interval the 2.5 and 97.5 % points of the resampled
    log ratios."""
    m = len(units_a)
    if m != len(units_b):
        raise ValueError("the two runs must list the same participants")
    if m == 0:
        return PairedRatio(None, None, None, None, None, 0.0, 0, n_boot)
    w = resample_weights(m, n_boot, seed)
    la = ml_log_thresholds(units_a, w, design=design, grid=grid)
    lb = ml_log_thresholds(units_b, w, design=design, grid=grid)
    with np.errstate(invalid="ignore"):
        d = lb - la
    finite = np.isfinite(la) & np.isfinite(lb)

    def level(v: float) -> float | None:
        # off the grid's ends: 0 or infinity (below or above everything the grid reaches)
        return None if math.isnan(v) else math.exp(v)

    lo, hi = _percentile_interval(d[1:]) if m >= 2 else (math.nan, math.nan)
    return PairedRatio(
        ratio=math.exp(float(d[0])) if finite[0] else None,
        ci_low=math.exp(lo) if math.isfinite(lo) else None,
        ci_high=math.exp(hi) if math.isfinite(hi) else None,
        threshold_a=level(float(la[0])),
        threshold_b=level(float(lb[0])),
        off_grid=float(1 - finite[1:].mean()) if n_boot else 0.0,
        n_participants=m,
        n_boot=n_boot,
    )


def newcombe_difference(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float]:
    """Newcombe's (1998, method 10) interval of p1 - p2 for two independent proportions, from
    their Wilson intervals."""
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson_interval(k1, n1)
    l2, u2 = wilson_interval(k2, n2)
    d = p1 - p2
    return d - math.hypot(p1 - l1, u2 - p2), d + math.hypot(u1 - p1, p2 - l2)


def paired_rate_difference(
    k_a: Sequence[int],
    n_a: Sequence[int],
    k_b: Sequence[int],
    n_b: Sequence[int],
    weights: np.ndarray,
) -> PointStat:
    """Run b's pooled rate minus run a's at one level, from the same participants (index i
    is one participant in both), with the 2.5 and 97.5 % points over the paired resamples
    in `weights` (row 0: the data). Never narrower than Newcombe's interval for two
    independent proportions of the pooled trials: the paired resamples add what participants
    differ by to the binomial noise of each run's trials, so that is a floor, as the Wilson
    interval is for one rate."""
    ka, na, kb, nb = (np.asarray(v, dtype=float) for v in (k_a, n_a, k_b, n_b))
    if na.sum() == 0 or nb.sum() == 0:
        return PointStat(None, None, None)
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = (weights @ kb) / (weights @ nb) - (weights @ ka) / (weights @ na)
    value = float(diff[0])
    f_lo, f_hi = newcombe_difference(int(kb.sum()), int(nb.sum()), int(ka.sum()), int(na.sum()))
    if len(ka) < 2:
        return PointStat(value, f_lo, f_hi)
    lo, hi = _percentile_interval(diff[1:])
    return PointStat(value, min(lo, f_lo), max(hi, f_hi))


def paired_mean_difference(
    a: Sequence[float], b: Sequence[float], weights: np.ndarray
) -> PointStat:
    """The mean over participants of b[i] - a[i], with the 2.5 and 97.5 % points over the
    resamples in `weights` (row 0: the data; one column per participant)."""
    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    if not d.size:
        return PointStat(None, None, None)
    means = (weights @ d) / weights.sum(axis=1)
    if d.size < 2:
        return PointStat(float(means[0]), None, None)
    lo, hi = _percentile_interval(means[1:])
    return PointStat(float(means[0]), lo, hi)
