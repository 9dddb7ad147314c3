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
from typing import Any, Literal

import numpy as np
from scipy import special, stats

Z95 = float(stats.norm.ppf(0.975))
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
    return max(0.0, centre - half), min(1.0, centre + half)


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
    zh, zf = float(stats.norm.ppf(h)), float(stats.norm.ppf(f))
    d = zh - zf
    var = h * (1 - h) / ((n_signal + 1) * stats.norm.pdf(zh) ** 2) + f * (1 - f) / (
        (n_noise + 1) * stats.norm.pdf(zf) ** 2
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
    ci = {k: v["0.95"] for k, v in fit.confidence_intervals.items()}
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
    out.flags = _flags(out, width_bounds=(width_min, 3 * spread), w_ci=(w_lo, w_hi), group=group)
    return out


def _d_prime_one(
    est: Mapping[str, float], draws: Mapping[str, np.ndarray], sig: Any
) -> tuple[float | None, tuple[float | None, float | None]]:
    """Where d' = z(P(yes | x)) - z(false-alarm rate) reaches 1, for the MAP and for each
    posterior draw (an unreached level counts as above every level)."""

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
    f: CurveFit, *, width_bounds: tuple[float, float], w_ci: tuple[float, float], group: bool
) -> list[str]:
    """What a reader of the fit must know, in words."""
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
    if f.lapse_ci[1] >= MAX_LAPSE * 0.95 or f.lapse >= MAX_LAPSE * 0.95:
        out.append(
            f"The lapse rate sits at its bound ({MAX_LAPSE:.0%}): the answers at the largest "
            "epsilons are often wrong, so the upper asymptote is not measured."
        )
    if f.design == "yesno" and f.guess_ci[1] >= 0.5 * 0.95:
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
