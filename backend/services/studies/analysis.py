"""A study's data and what it says: one row per trial, the exclusions, the results per run
(2AFC percent correct or yes/no hit and false-alarm rates, with a fitted psychometric
threshold, reported only where it lies within the tested epsilons) beside the model's robust
accuracy at the study's own epsilons, and the tidy trials CSV."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.models import ParticipantSession, Response, Stimulus, Study, TrainingRun, Trial
from backend.services import psychometrics
from backend.services.csv_export import csv_text
from backend.services.studies.common import eps_key


def _trial_rows(db: Session, study: Study) -> list[dict[str, Any]]:
    q = (
        select(ParticipantSession, Trial, Response)
        .join(Trial, Trial.session_id == ParticipantSession.id)
        .outerjoin(Response, Response.trial_id == Trial.id)
        .where(ParticipantSession.study_id == study.id)
        .order_by(ParticipantSession.id, Trial.index)
    )
    stim_ids = dict(
        db.execute(
            select(Stimulus.id, Stimulus.public_id).where(Stimulus.study_id == study.id)
        ).all()
    )
    rows = []
    for s, t, r in db.execute(q):
        rows.append(
            {
                "session_id": s.id,
                "participant": s.participant_key,
                "prolific_pid": s.prolific_pid,
                "condition_index": s.condition_index,
                "completed": s.completed_at is not None,
                "trial_index": t.index,
                "trial_id": t.public_id,
                "phase": t.phase,
                "left_stimulus": stim_ids.get(t.left_stimulus_id),
                "right_stimulus": stim_ids.get(t.right_stimulus_id)
                if t.right_stimulus_id
                else None,
                "run_id": t.run_id,
                "epsilon": t.epsilon,
                "epsilon_255": round(t.epsilon * 255, 6),
                "correct_answer": t.correct_answer,
                "answer": r.answer if r else None,
                "correct": r.correct if r else None,
                "rt_ms": r.rt_ms if r else None,
                "display_scale": r.display_scale if r else None,
                "shown_at": r.shown_at.isoformat() if r and r.shown_at else None,
                "answered_at": r.answered_at.isoformat() if r else None,
            }
        )
    return rows


def exclusions(study: Study, rows: list[dict[str, Any]]) -> dict[int, str]:
    """session id -> the reason it is excluded (only sessions that finished are judged;
    unfinished ones are left out of the analysis as "not completed")."""
    rules = study.config["exclusion"]
    by_session: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_session[r["session_id"]].append(r)
    out: dict[int, str] = {}
    for sid, trials in by_session.items():
        if not trials[0]["completed"]:
            out[sid] = "did not complete the study"
            continue
        catch = [t for t in trials if t["phase"] == "catch"]
        main = [t for t in trials if t["phase"] == "main"]
        if catch:
            acc = sum(bool(t["correct"]) for t in catch) / len(catch)
            if acc < rules["min_catch_accuracy"]:
                out[sid] = f"catch accuracy {acc:.0%} below {rules['min_catch_accuracy']:.0%}"
                continue
        answered = [t for t in main + catch if t["rt_ms"] is not None]
        if answered:
            fast = sum(t["rt_ms"] < rules["too_fast_ms"] for t in answered) / len(answered)
            if fast > rules["max_too_fast_fraction"]:
                out[sid] = (
                    f"{fast:.0%} of answers faster than {rules['too_fast_ms']:g} ms "
                    f"(at most {rules['max_too_fast_fraction']:.0%} allowed)"
                )
                continue
        if (
            rules.get("same_answer_throughout")
            and len(answered) > 1
            and len({t["answer"] for t in answered}) == 1
        ):
            out[sid] = f"gave the same answer ({answered[0]['answer']}) on every trial"
    return out


def within_grid(value: float | None, levels: list[float]) -> tuple[float | None, str | None]:
    """A threshold (or interval bound) in grey levels if it lies within the tested epsilons,
    else (None, "above") or (None, "below"): a fitted curve extrapolated past the grid says
    nothing that the data measured, so no number is reported for it. `levels` are the
    perturbed levels tested (epsilon > 0); an unreached threshold (None, inf) is "above"."""
    positive = [e for e in levels if e > 0]
    if not positive:
        return None, None
    if value is None or not math.isfinite(value) or value > max(positive) + 1e-9:
        return None, "above"
    if value < min(positive) - 1e-9:
        return None, "below"
    return value, None


def model_accuracy(study: Study, run_id: int) -> dict[str, Any] | None:
    """The run's model's robust accuracy at the study's own epsilons, measured when the study's
    stimuli were made (worker.study_tasks, on the study's main images), or None for a study
    made before that was recorded."""
    table = study.config.get("model_accuracy")
    if not isinstance(table, dict):
        return None
    for entry in table.get("runs", []):
        if isinstance(entry, dict) and entry.get("run_id") == run_id:
            settings = {k: v for k, v in table.items() if k != "runs"}
            return {**settings, "points": entry.get("points", [])}
    return None


def robust_accuracy_curve(run: TrainingRun) -> list[dict[str, float]] | None:
    """The run's robust accuracy per epsilon, from final_metrics, in grey levels.

    Accepts {"robust_accuracy": {eps: acc}}, {"pgd_accuracy": {eps: acc}} (the training
    library's evaluate_model) or either nested under "final"; eps keys in pixel units (0..1)
    or grey levels (> 1)."""
    fm = run.final_metrics or {}
    final = fm.get("final")
    candidates: list[dict[str, Any]] = [fm, final if isinstance(final, dict) else {}]
    for src in candidates:
        for key in ("robust_accuracy", "pgd_accuracy"):
            table = src.get(key)
            if isinstance(table, dict) and table:
                points = []
                for k, v in table.items():
                    try:
                        e, acc = float(k), float(v)
                    except (TypeError, ValueError):
                        continue
                    points.append(
                        {"epsilon_255": round(e * 255 if e <= 1 else e, 4), "accuracy": acc}
                    )
                if points:
                    clean = src.get("clean_accuracy")
                    if isinstance(clean, int | float) and not any(
                        p["epsilon_255"] == 0 for p in points
                    ):
                        points.append({"epsilon_255": 0.0, "accuracy": float(clean)})
                    return sorted(points, key=lambda p: p["epsilon_255"])
    return None


def results(db: Session, study: Study, *, n_boot: int = 200) -> dict[str, Any]:
    rows = _trial_rows(db, study)
    excluded = exclusions(study, rows)
    sessions = {r["session_id"]: r for r in rows}
    included_rows = [
        r
        for r in rows
        if r["session_id"] not in excluded and r["phase"] == "main" and r["answer"] is not None
    ]
    runs_out = []
    for rid in study.config["run_ids"]:
        run = db.get(TrainingRun, rid)
        mine = [r for r in included_rows if r["run_id"] == rid]
        points = []
        per_participant: dict[int, dict[float, list[int]]] = defaultdict(
            lambda: defaultdict(lambda: [0, 0])
        )
        if study.design == "2afc":
            levels = sorted({float(e) for e in study.config["epsilons_255"]})
            for e in levels:
                cell = [r for r in mine if eps_key(r["epsilon_255"]) == eps_key(e)]
                k, n = sum(bool(r["correct"]) for r in cell), len(cell)
                lo, hi = psychometrics.wilson_interval(k, n)
                points.append(
                    {
                        "epsilon_255": e,
                        "n": n,
                        "correct": k,
                        "percent_correct": (k / n) if n else None,
                        "ci_low": lo,
                        "ci_high": hi,
                    }
                )
                for r in cell:
                    acc = per_participant[r["session_id"]][e]
                    acc[0] += bool(r["correct"])
                    acc[1] += 1
            guess, criterion = 0.5, 0.75
        else:
            clean = [r for r in mine if r["epsilon"] == 0]
            fa, n_noise = sum(r["answer"] == "yes" for r in clean), len(clean)
            levels = sorted({float(e) for e in study.config["epsilons_255"] if e > 0})
            fa_lo, fa_hi = psychometrics.wilson_interval(fa, n_noise)
            for e in levels:
                cell = [r for r in mine if eps_key(r["epsilon_255"]) == eps_key(e)]
                hits, n = sum(r["answer"] == "yes" for r in cell), len(cell)
                lo, hi = psychometrics.wilson_interval(hits, n)
                d = psychometrics.d_prime(hits, n, fa, n_noise)
                points.append(
                    {
                        "epsilon_255": e,
                        "n": n,
                        "hits": hits,
                        "hit_rate": (hits / n) if n else None,
                        "ci_low": lo,
                        "ci_high": hi,
                        "false_alarms": fa,
                        "n_clean": n_noise,
                        "false_alarm_rate": (fa / n_noise) if n_noise else None,
                        "false_alarm_ci_low": fa_lo,
                        "false_alarm_ci_high": fa_hi,
                        "d_prime": d.d_prime,
                        "d_prime_ci_low": d.ci_low,
                        "d_prime_ci_high": d.ci_high,
                    }
                )
            for r in mine:
                acc = per_participant[r["session_id"]][round(r["epsilon_255"], 6)]
                acc[0] += r["answer"] == "yes"
                acc[1] += 1
            guess, criterion = None, None
        units = [{x: (v[0], v[1]) for x, v in u.items()} for u in per_participant.values()]
        boot = psychometrics.bootstrap_threshold(
            units,
            guess=guess,
            criterion=criterion,
            n_boot=n_boot,
            seed=int(study.config.get("seed", 0)) + rid,
        )
        fit = None
        if boot.fit is not None:
            f = boot.fit
            positive = [e for e in levels if e > 0]
            lowest, highest = min(positive, default=0.0), max(positive, default=0.0)
            threshold, beyond = within_grid(f.threshold, levels)
            # no interval (fewer than two participants): both bounds None, nothing beyond
            has_ci = boot.n_boot > 0
            ci_low, ci_low_beyond = within_grid(boot.ci_low, levels) if has_ci else (None, None)
            ci_high, ci_high_beyond = within_grid(boot.ci_high, levels) if has_ci else (None, None)
            fit = {
                "alpha_255": f.alpha,
                "beta": f.beta,
                "guess": f.guess,
                "lapse": f.lapse,
                "criterion": f.criterion,
                "threshold_255": threshold,
                "threshold_beyond": beyond,
                "threshold_ci_low": ci_low,
                "threshold_ci_low_beyond": ci_low_beyond,
                "threshold_ci_high": ci_high,
                "threshold_ci_high_beyond": ci_high_beyond,
                "lowest_epsilon_255": lowest,
                "highest_epsilon_255": highest,
                "n_boot": boot.n_boot,
                "n_boot_unreached": boot.n_failed,
            }
        runs_out.append(
            {
                "run_id": rid,
                "run_name": run.name if run else "",
                "method": run.method if run else "",
                "points": points,
                "fit": fit,
                "robust_accuracy": robust_accuracy_curve(run) if run else None,
                "model_accuracy": model_accuracy(study, rid),
            }
        )
    excluded_list = [
        {"session_id": sid, "participant": sessions[sid]["participant"], "reason": reason}
        for sid, reason in sorted(excluded.items())
    ]
    return {
        "study_id": study.id,
        "design": study.design,
        "participants": {
            "total": len(sessions),
            "completed": sum(1 for r in sessions.values() if r["completed"]),
            "included": len(sessions) - len(excluded),
        },
        "excluded": excluded_list,
        "runs": runs_out,
    }


CSV_COLUMNS = [
    "participant",
    "prolific_pid",
    "session_id",
    "condition_index",
    "trial_index",
    "trial_id",
    "phase",
    "left_stimulus",
    "right_stimulus",
    "run_id",
    "epsilon",
    "epsilon_255",
    "side",
    "answer",
    "correct",
    "rt_ms",
    "display_scale",
    "shown_at",
    "answered_at",
    "excluded",
    "exclusion_reason",
]


def trials_csv(db: Session, study: Study) -> str:
    """One row per trial (tidy): `side` is where the changed image was (2AFC) or whether the
    image was changed (yes/no: yes/no)."""
    rows = _trial_rows(db, study)
    excluded = exclusions(study, rows)
    return csv_text(
        CSV_COLUMNS,
        (
            [
                r["participant"],
                r["prolific_pid"] or "",
                r["session_id"],
                r["condition_index"],
                r["trial_index"],
                r["trial_id"],
                r["phase"],
                r["left_stimulus"],
                r["right_stimulus"] or "",
                r["run_id"] if r["run_id"] is not None else "",
                f"{r['epsilon']:.8g}",
                f"{r['epsilon_255']:g}",
                r["correct_answer"],
                r["answer"] or "",
                "" if r["correct"] is None else int(r["correct"]),
                "" if r["rt_ms"] is None else f"{r['rt_ms']:.1f}",
                "" if r["display_scale"] is None else r["display_scale"],
                r["shown_at"] or "",
                r["answered_at"] or "",
                int(r["session_id"] in excluded),
                excluded.get(r["session_id"], ""),
            ]
            for r in rows
        ),
    )
