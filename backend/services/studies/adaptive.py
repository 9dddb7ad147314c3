"""QUEST+ placement (issue 25, item 5): per participant and run, the epsilon of each main trial
is chosen on the server after the run's previous answer is stored, from a dense ladder of
log-spaced epsilons whose stimuli were all made in advance (2AFC only).

- the ladder: `levels` epsilons log-spaced over [ladder_min_255, ladder_max_255] grey levels;
  it is the study's grid (config epsilons_255), so the stimuli, the model's accuracy and the
  analysis (psignifit on the pooled counts) all work over it unchanged;
- the staircase: the `questplus` package's Weibull (in log10 epsilon; guess rate 0.5) over a
  grid of thresholds spanning the ladder, shapes SLOPES and lapse rates LAPSES, uniform prior;
  the next level is the one that minimises the expected entropy of the posterior;
- the posterior is kept per (session, run) in quest_tracks, so a reload or the next answer goes
  on from it; its summary (the threshold halfway up the sigmoid, as psignifit reports it, with
  a 95 % interval) is stored on every main trial once its answer was counted, and exported;
- the stopping rule: each run's sequence is made `max_trials` long; with `stop_ci_ratio` a run
  stops early, after `min_trials`, once its threshold interval spans at most that ratio, and
  its unanswered trials are removed.

What the participant's browser learns: the same as in constant stimuli (opaque per-session
ids, one PNG length, one set of headers), and a trial's images only once its level is chosen
(participation.pending_trials lists no trial past a run's next one). The work done on an
answer is the same whatever the answer: one posterior update and one choice of the next
level. The level shown is the stimulus itself; a stop by posterior width shortens the
sequence, which is what the rule is for.
"""

from __future__ import annotations

import copy
import math
from functools import lru_cache
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.models import ParticipantSession, QuestTrack, Response, Stimulus, Study, Trial
from backend.services.studies.common import eps_key

THRESHOLD_POINTS = 41
SLOPES = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0)  # Weibull shapes (questplus's "slope")
LAPSES = (0.0, 0.02, 0.05)
GUESS = 0.5  # 2AFC
RESPONSES = ("Correct", "Incorrect")
STOP_TRIALS = "trial count"
STOP_WIDTH = "posterior width"


def is_quest(study: Study) -> bool:
    return study.config.get("placement") == "quest"


def ladder(settings: dict[str, Any]) -> list[float]:
    """The ladder's epsilons in grey levels, ascending, rounded to 1e-4."""
    levels = np.geomspace(
        float(settings["ladder_min_255"]),
        float(settings["ladder_max_255"]),
        int(settings["levels"]),
    )
    return [round(float(e), 4) for e in levels]


def study_ladder(study: Study) -> tuple[float, ...]:
    return tuple(float(e) for e in study.config["epsilons_255"])


@lru_cache(maxsize=8)
def _template(levels: tuple[float, ...]) -> Any:
    """The staircase at its prior for one ladder (its likelihood table is made once)."""
    import questplus  # with xarray and pandas: 0.3 s that only an adaptive study pays

    log_levels = np.log10(np.asarray(levels))
    return questplus.QuestPlusWeibull(
        intensities=log_levels,
        thresholds=np.linspace(log_levels[0], log_levels[-1], THRESHOLD_POINTS),
        slopes=list(SLOPES),
        lower_asymptotes=[GUESS],
        lapse_rates=list(LAPSES),
        responses=list(RESPONSES),
        stim_scale="log10",
    )


def staircase(levels: tuple[float, ...], posterior: list[float] | None = None) -> Any:
    """A QUEST+ staircase over the ladder, at `posterior` (flattened values, as stored) or at
    the prior."""
    base = _template(levels)
    q = copy.copy(base)
    q.stim_history, q.resp_history = [], []
    values = np.asarray(base.prior.values if posterior is None else posterior, dtype=float)
    q.posterior = base.prior.copy(data=values.reshape(base.prior.shape))
    return q


def _level_index(levels: tuple[float, ...], log10_eps: float) -> int:
    return int(np.argmin(np.abs(np.log10(np.asarray(levels)) - log10_eps)))


def next_level(q: Any, levels: tuple[float, ...]) -> float:
    """The ladder epsilon (grey levels) QUEST+ chooses next."""
    return levels[_level_index(levels, float(q.next_intensity))]


def first_level(levels: tuple[float, ...]) -> float:
    """Every track's first epsilon: the prior's choice, the same for everyone."""
    return _first_level(levels)


@lru_cache(maxsize=8)
def _first_level(levels: tuple[float, ...]) -> float:
    return next_level(staircase(levels), levels)


def update(q: Any, levels: tuple[float, ...], eps_255: float, correct: bool) -> None:
    level = float(np.log10(levels[_level_index(levels, math.log10(eps_255))]))
    q.update(intensity=level, response=RESPONSES[0] if correct else RESPONSES[1])


def summary(q: Any) -> dict[str, Any]:
    """The posterior's threshold (epsilon halfway up the sigmoid, grey levels: where questplus's
    Weibull 1 - exp(-10^(beta (x - t))) is 0.5, x = t + log10(ln 2) / beta) with its 95 %
    interval and sd (log10), and the posterior means of the shape and lapse rate."""
    post = np.asarray(q.posterior.values, dtype=float)
    dims = list(q.posterior.dims)

    def axis(name: str, values: Any) -> np.ndarray:
        return np.reshape(np.asarray(values, float), [-1 if d == name else 1 for d in dims])

    t = axis("threshold", q.param_domain["threshold"])
    b = axis("slope", q.param_domain["slope"])
    lam = axis("lapse_rate", q.param_domain["lapse_rate"])
    x50 = np.broadcast_to(t + math.log10(math.log(2)) / b, post.shape).ravel()
    w = post.ravel() / post.sum()
    order = np.argsort(x50)
    cum = np.cumsum(w[order])
    ranked = x50[order]
    lo = float(ranked[min(int(np.searchsorted(cum, 0.025)), len(cum) - 1)])
    hi = float(ranked[min(int(np.searchsorted(cum, 0.975)), len(cum) - 1)])
    mean = float((w * x50).sum())
    sd = float(math.sqrt(max(0.0, float((w * (x50 - mean) ** 2).sum()))))
    return {
        "threshold_255": round(10**mean, 4),
        "ci_low_255": round(10**lo, 4),
        "ci_high_255": round(10**hi, 4),
        "sd_log10": round(sd, 4),
        "slope": round(float((post * b).sum() / post.sum()), 3),
        "lapse": round(float((post * lam).sum() / post.sum()), 4),
    }


# ---- the database side ---------------------------------------------------------------------


def start_tracks(db: Session, study: Study, session: ParticipantSession) -> None:
    """One track per run at the prior (at consent, with the session's trials)."""
    levels = study_ladder(study)
    prior = [float(v) for v in np.asarray(_template(levels).prior.values).ravel()]
    for rid in study.config["run_ids"]:
        db.add(
            QuestTrack(
                session_id=session.id,
                run_id=int(rid),
                posterior=prior,
                answered=0,
                next_epsilon_255=first_level(levels),
            )
        )


def _show_level(db: Session, study: Study, trial: Trial, eps_255: float) -> None:
    """Point a not yet shown main trial's changed image at the ladder level `eps_255` (its
    source image and run kept; the clean reference stays on its side)."""
    changed_id = (
        trial.left_stimulus_id if trial.correct_answer == "left" else trial.right_stimulus_id
    )
    changed = db.get(Stimulus, changed_id)
    assert changed is not None
    wanted = eps_key(eps_255)
    target = next(
        s
        for s in db.scalars(
            select(Stimulus).where(
                Stimulus.study_id == study.id,
                Stimulus.purpose == "main",
                Stimulus.run_id == trial.run_id,
                Stimulus.source_image_id == changed.source_image_id,
            )
        )
        if eps_key(s.epsilon * 255) == wanted
    )
    if trial.correct_answer == "left":
        trial.left_stimulus_id = target.id
    else:
        trial.right_stimulus_id = target.id
    trial.epsilon = target.epsilon


def _drop_trials(db: Session, session: ParticipantSession, drop: list[Trial]) -> None:
    """Remove unanswered trials and number the session's later trials on without a gap."""
    for t in drop:
        db.delete(t)
    db.flush()
    rest = list(
        db.scalars(select(Trial).where(Trial.session_id == session.id).order_by(Trial.index))
    )
    for new_index, t in enumerate(rest):
        if t.index != new_index:
            t.index = new_index
            db.flush()  # one row at a time: (session, index) stays unique throughout


def after_answer(
    db: Session, study: Study, session: ParticipantSession, trial: Trial, correct: bool
) -> None:
    """Count a stored main answer in its run's posterior, store the summary on the trial, and
    either point the run's next trial at the level QUEST+ chooses or stop the run."""
    if trial.phase != "main" or trial.run_id is None:
        return
    settings = study.config["quest"]
    levels = study_ladder(study)
    track = db.scalar(
        select(QuestTrack)
        .where(QuestTrack.session_id == session.id, QuestTrack.run_id == trial.run_id)
        .with_for_update()
    )
    if track is None:  # started before its tracks (cannot happen through consent)
        start_tracks(db, study, session)
        db.flush()
        track = db.scalar(
            select(QuestTrack).where(
                QuestTrack.session_id == session.id, QuestTrack.run_id == trial.run_id
            )
        )
        assert track is not None
    q = staircase(levels, track.posterior)
    update(q, levels, trial.epsilon * 255, correct)
    chosen = next_level(q, levels)  # chosen whatever follows: the same work every answer
    post = summary(q)
    track.answered += 1
    remaining = list(
        db.scalars(
            select(Trial)
            .outerjoin(Response, Response.trial_id == Trial.id)
            .where(
                Trial.session_id == session.id,
                Trial.run_id == trial.run_id,
                Trial.phase == "main",
                Trial.id != trial.id,
                Response.id.is_(None),
            )
            .order_by(Trial.index)
        )
    )
    stop = None
    ratio = settings.get("stop_ci_ratio")
    if not remaining:
        stop = STOP_TRIALS
    elif (
        ratio is not None
        and track.answered >= int(settings["min_trials"])
        and post["ci_high_255"] <= float(ratio) * post["ci_low_255"]
    ):
        stop = STOP_WIDTH
    track.posterior = [float(v) for v in np.asarray(q.posterior.values).ravel()]
    track.next_epsilon_255 = chosen
    track.stopped = stop
    trial.posterior = {
        **post,
        "answered": track.answered,
        "next_epsilon_255": None if stop else chosen,
        "stopped": stop,
    }
    if stop == STOP_WIDTH:
        _drop_trials(db, session, remaining)
    elif remaining:
        _show_level(db, study, remaining[0], chosen)
    db.flush()


def ready_cut(rows: list[Trial]) -> list[Trial]:
    """The unanswered trials (in order) a QUEST+ session may be shown now: up to, not
    including, a run's second unanswered main trial, whose level is not chosen yet."""
    out: list[Trial] = []
    seen: set[int | None] = set()
    for t in rows:
        if t.phase == "main":
            if t.run_id in seen:
                break
            seen.add(t.run_id)
        out.append(t)
    return out


def posterior_columns(posterior: dict[str, Any] | None) -> list[Any]:
    """The trials CSV's QUEST+ columns (POSTERIOR_COLUMNS) of one trial."""
    p = posterior or {}
    return ["" if p.get(k) is None else p[k] for k in POSTERIOR_KEYS]


POSTERIOR_KEYS = (
    "threshold_255",
    "ci_low_255",
    "ci_high_255",
    "sd_log10",
    "next_epsilon_255",
    "stopped",
)
POSTERIOR_COLUMNS = [f"quest_{k}" for k in POSTERIOR_KEYS]
