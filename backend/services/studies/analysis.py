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
from backend.services.studies import comparison
from backend.services.studies.adaptive import POSTERIOR_COLUMNS, posterior_columns
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
                # QUEST+ placement: the run's posterior once this answer was counted
                "posterior": t.posterior,
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


def model_autoattack(study: Study, run_id: int) -> dict[str, Any] | None:
    """The run's model's accuracy under the original AutoAttack at the study's epsilons, on a
    stated subset of its main images, with PGD's on the same images (worker.study_tasks,
    measure_model_autoattack), or None for a study made before that was measured."""
    table = study.config.get("model_autoattack")
    if not isinstance(table, dict):
        return None
    for entry in table.get("runs", []):
        if isinstance(entry, dict) and entry.get("run_id") == run_id:
            settings = {k: v for k, v in table.items() if k != "runs"}
            return {**settings, **{k: v for k, v in entry.items() if k != "run_id"}}
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


def participant_counts(
    rows: list[dict[str, Any]], design: str, run_id: int
) -> dict[int, dict[float, tuple[int, int]]]:
    """Per included session, {level in grey levels: (k, n)} of its answered main and catch
    trials of one run: k counts correct answers (2AFC) or "yes" (yes/no, where level 0 holds
    the clean trials). `rows` are trial rows of included sessions only."""
    acc: dict[int, dict[float, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for r in rows:
        if r["run_id"] != run_id or r["phase"] not in ("main", "catch") or r["answer"] is None:
            continue
        cell = acc[r["session_id"]][float(eps_key(r["epsilon_255"]))]
        cell[0] += bool(r["correct"]) if design == "2afc" else r["answer"] == "yes"
        cell[1] += 1
    return {sid: {x: (v[0], v[1]) for x, v in u.items()} for sid, u in acc.items()}


def _bounded(value: float | None, levels: list[float], prefix: str) -> dict[str, Any]:
    v, beyond = within_grid(value, levels)
    return {prefix: v, f"{prefix}_beyond": beyond}


def fit_json(fit: psychometrics.CurveFit, levels: list[float]) -> dict[str, Any]:
    """A psignifit fit as the results page shows it: thresholds (and interval bounds) only
    where they lie within the tested epsilons, the slope, asymptotes, overdispersion, goodness
    of fit and the flags in words."""
    positive = [e for e in levels if e > 0]
    out: dict[str, Any] = {
        "method": "psignifit 4 (Weibull in epsilon, beta-binomial, 95% credible intervals)",
        "alpha_255": fit.alpha,
        "beta": fit.beta,
        "beta_ci": list(fit.beta_ci),
        "guess": fit.guess,
        "guess_ci": list(fit.guess_ci),
        "lapse": fit.lapse,
        "lapse_ci": list(fit.lapse_ci),
        "eta": fit.eta,
        "eta_ci": list(fit.eta_ci),
        "deviance": fit.deviance,
        "deviance_p": fit.deviance_p,
        "n_blocks": fit.n_blocks,
        "n_trials": fit.n_trials,
        "n_participants": fit.n_participants,
        # the probability at the threshold: halfway between the asymptotes
        "criterion": fit.guess + (1 - fit.guess - fit.lapse) / 2,
        "threshold_estimate_255": fit.threshold,
        **_bounded(fit.threshold, levels, "threshold_255"),
        **_bounded(fit.threshold_ci[0], levels, "threshold_ci_low"),
        **_bounded(fit.threshold_ci[1], levels, "threshold_ci_high"),
        "lowest_epsilon_255": min(positive, default=0.0),
        "highest_epsilon_255": max(positive, default=0.0),
        "flags": list(fit.flags),
    }
    # the names the page reads the threshold by: threshold_255 etc. come from _bounded
    out["threshold_beyond"] = out.pop("threshold_255_beyond")
    if fit.design == "yesno":
        out.update(_bounded(fit.threshold_d1, levels, "threshold_d1_255"))
        out["threshold_d1_beyond"] = out.pop("threshold_d1_255_beyond")
        out.update(_bounded(fit.threshold_d1_ci[0], levels, "threshold_d1_ci_low"))
        out.update(_bounded(fit.threshold_d1_ci[1], levels, "threshold_d1_ci_high"))
    return out


def analyse_run(
    units: dict[Any, dict[float, tuple[int, int]]],
    *,
    design: str,
    grid: list[float],
    catch_epsilon_255: float | None,
    seed: int,
    own_fits: bool = True,
) -> dict[str, Any]:
    """One run's results from its participants' counts ({participant: {level: (k, n)}}, as
    participant_counts gives them): the points with intervals over participants, the catch
    level, the group fit and each participant's own fit where their trials allow. Plain data
    in and out: the benchmark (backend/benchmarks/study_design.py) calls it on simulated
    participants, and a paired comparison of two runs can call it per run."""
    dsg: psychometrics.Design = "2afc" if design == "2afc" else "yesno"
    keys = list(units)
    catch = float(eps_key(catch_epsilon_255)) if catch_epsilon_255 else None

    def at(level: float) -> tuple[list[int], list[int]]:
        ks = [units[p].get(level, (0, 0))[0] for p in keys]
        ns = [units[p].get(level, (0, 0))[1] for p in keys]
        return ks, ns

    def counted(ns: list[int]) -> int:
        return sum(1 for n in ns if n > 0)

    points: list[dict[str, Any]] = []
    if dsg == "2afc":
        levels = sorted({float(e) for e in grid})
        for i, e in enumerate(levels):
            ks, ns = at(float(eps_key(e)))
            st = psychometrics.rate_over_participants(ks, ns, seed=seed + i)
            points.append(
                {
                    "epsilon_255": e,
                    "n": sum(ns),
                    "n_participants": counted(ns),
                    "correct": sum(ks),
                    "percent_correct": st.value,
                    "ci_low": st.ci_low,
                    "ci_high": st.ci_high,
                    # two identical images: a check that answers sit at chance, not a level
                    "role": "chance check" if e == 0 else "level",
                }
            )
    else:
        levels = sorted({float(e) for e in grid if e > 0})
        fa_k, fa_n = at(0.0)
        fa = psychometrics.rate_over_participants(fa_k, fa_n, seed=seed)
        for i, e in enumerate(levels):
            ks, ns = at(float(eps_key(e)))
            yn = psychometrics.yes_no_point(ks, ns, fa_k, fa_n, seed=seed + 10 * i)
            points.append(
                {
                    "epsilon_255": e,
                    "n": sum(ns),
                    "n_participants": counted(ns),
                    "hits": sum(ks),
                    "hit_rate": yn.hit_rate.value,
                    "ci_low": yn.hit_rate.ci_low,
                    "ci_high": yn.hit_rate.ci_high,
                    "false_alarms": sum(fa_k),
                    "n_clean": sum(fa_n),
                    "false_alarm_rate": fa.value,
                    "false_alarm_ci_low": fa.ci_low,
                    "false_alarm_ci_high": fa.ci_high,
                    "d_prime": yn.d_prime.value,
                    "d_prime_ci_low": yn.d_prime.ci_low,
                    "d_prime_ci_high": yn.d_prime.ci_high,
                    "criterion": yn.criterion.value,
                    "criterion_ci_low": yn.criterion.ci_low,
                    "criterion_ci_high": yn.criterion.ci_high,
                }
            )
    catch_point = None
    if catch is not None:
        ks, ns = at(catch)
        if sum(ns):
            st = psychometrics.rate_over_participants(ks, ns, seed=seed + 999)
            catch_point = {
                "epsilon_255": catch,
                "n": sum(ns),
                "rate": st.value,
                "ci_low": st.ci_low,
                "ci_high": st.ci_high,
            }
    positive = [e for e in levels if e > 0]
    fit = None
    fit_note = None
    n_people = sum(1 for u in units.values() if any(n for _, n in u.values()))
    if len(positive) < 2:
        fit_note = "A curve needs at least two perturbed epsilons."
    elif n_people == 0:
        fit_note = "No answers from included participants yet."
    else:
        f = psychometrics.fit_curve(
            psychometrics.blocks_of(list(units.values())),
            design=dsg,
            grid=positive,
            n_participants=n_people,
            seed=seed,
        )
        if f is None:
            fit_note = "Not enough answers at two perturbed epsilons yet."
        else:
            fit = fit_json(f, levels)
    individual = []
    if own_fits:
        for p in keys:
            if not psychometrics.can_fit_own(units[p], dsg):
                continue
            one = psychometrics.fit_curve(
                psychometrics.blocks_of([units[p]]),
                design=dsg,
                grid=positive,
                n_participants=1,
                seed=seed,
                samples=500,
                group=False,
            )
            if one is not None:
                individual.append(
                    {
                        "participant": p,
                        **_bounded(one.threshold, levels, "threshold_255"),
                        **_bounded(one.threshold_ci[0], levels, "ci_low"),
                        **_bounded(one.threshold_ci[1], levels, "ci_high"),
                        "beta": one.beta,
                        "lapse": one.lapse,
                        "flags": one.flags,
                    }
                )
    return {
        "points": points,
        "catch": catch_point,
        "fit": fit,
        "fit_note": fit_note,
        "individual_fits": individual,
        "individual_fit_rule": (
            f"a participant gets a fit of their own with at least "
            f"{psychometrics.MIN_TRIALS_OWN_FIT} trials of the run over 3 or more epsilons"
        ),
    }


def results(db: Session, study: Study) -> dict[str, Any]:
    """The whole analysis of a study (exclusions, every run's points, fits and per-participant
    fits): the work the analysis cache does in the background (analysis_cache.refresh); the
    results page reads what it stored."""
    if study.design == "label":  # one image named per trial (issue 26)
        from backend.services.studies.labels import label_results

        return label_results(db, study)
    return results_from(load_inputs(db, study))


def load_inputs(db: Session, study: Study) -> dict[str, Any]:
    """Everything the analysis reads from the database, as plain data, so that the reading
    transaction can end before the fits (seconds to a minute) start."""
    runs = []
    for rid in study.config["run_ids"]:
        run = db.get(TrainingRun, rid)
        runs.append(
            {
                "run_id": rid,
                "run_name": run.name if run else "",
                "method": run.method if run else "",
                "robust_accuracy": robust_accuracy_curve(run) if run else None,
                "model_accuracy": model_accuracy(study, rid),
                "model_autoattack": model_autoattack(study, rid),
            }
        )
    rows = _trial_rows(db, study)
    return {
        "study_id": study.id,
        "design": study.design,
        "config": study.config,
        "rows": rows,
        "excluded": exclusions(study, rows),
        "runs": runs,
    }


def quest_estimates(
    rows: list[dict[str, Any]], run_id: int, excluded: dict[int, str]
) -> list[dict[str, Any]]:
    """QUEST+ placement: each participant's own threshold for the run, the staircase's
    posterior after their last counted main answer (halfway up the sigmoid, with its 95 %
    interval), the answers it rests on, why the run stopped (None: still running) and why the
    participant is excluded from the group analysis (None: included). Empty for constant
    stimuli. `rows` are _trial_rows' (in session and trial order)."""
    last: dict[int, dict[str, Any]] = {}
    for r in rows:
        if r["run_id"] == run_id and r["phase"] == "main" and r["posterior"]:
            last[r["session_id"]] = r
    return [
        {
            "participant": r["participant"],
            "answered": r["posterior"]["answered"],
            "threshold_255": r["posterior"]["threshold_255"],
            "ci_low_255": r["posterior"]["ci_low_255"],
            "ci_high_255": r["posterior"]["ci_high_255"],
            "stopped": r["posterior"]["stopped"],
            "excluded": excluded.get(sid),
        }
        for sid, r in last.items()
    ]


def results_from(inputs: dict[str, Any]) -> dict[str, Any]:
    """The analysis of what load_inputs read (no database)."""
    rows, excluded, config = inputs["rows"], inputs["excluded"], inputs["config"]
    design = inputs["design"]
    sessions = {r["session_id"]: r for r in rows}
    included_rows = [r for r in rows if r["session_id"] not in excluded]
    names = {sid: r["participant"] for sid, r in sessions.items()}
    runs_out = []
    grid = [float(e) for e in config["epsilons_255"]]
    counts_by_run = {}
    for run in inputs["runs"]:
        rid = run["run_id"]
        counts = counts_by_run[rid] = participant_counts(included_rows, design, rid)
        out = analyse_run(
            counts,
            design=design,
            grid=grid,
            catch_epsilon_255=float(config.get("catch_epsilon_255") or 0) or None,
            seed=int(config.get("seed", 0)) + rid,
        )
        for one in out["individual_fits"]:
            one["participant"] = names.get(one["participant"], str(one["participant"]))
        runs_out.append(
            {
                "run_id": rid,
                "run_name": run["run_name"],
                "method": run["method"],
                **out,
                "robust_accuracy": run["robust_accuracy"],
                "model_accuracy": run["model_accuracy"],
                "model_autoattack": run.get("model_autoattack"),
                "quest_estimates": quest_estimates(rows, rid, excluded),
            }
        )
        runs_out[-1]["model_at_threshold"] = comparison.model_at_threshold(
            out["fit"], comparison.model_curves(runs_out[-1])
        )
    excluded_list = [
        {"session_id": sid, "participant": sessions[sid]["participant"], "reason": reason}
        for sid, reason in sorted(excluded.items())
    ]
    return {
        "study_id": inputs["study_id"],
        "design": design,
        "participants": {
            "total": len(sessions),
            "completed": sum(1 for r in sessions.values() if r["completed"]),
            "included": len(sessions) - len(excluded),
        },
        "min_participants": psychometrics.MIN_PARTICIPANTS,
        "excluded": excluded_list,
        "runs": runs_out,
        # run against run: every pair of runs, paired over the participants who saw both
        "comparisons": comparison.compare_runs(
            counts_by_run,
            [{k: r[k] for k in ("run_id", "run_name", "method")} for r in runs_out],
            design=design,
            grid=grid,
            seed=int(config.get("seed", 0)),
        ),
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
    *POSTERIOR_COLUMNS,
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
                *posterior_columns(r.get("posterior")),
            ]
            for r in rows
        ),
    )


def trials_json(db: Session, study: Study) -> dict[str, Any]:
    """Every trial as one object (the CSV's facts, with the QUEST+ posterior summary whole)."""
    rows = _trial_rows(db, study)
    excluded = exclusions(study, rows)
    data = [
        {
            **r,
            "excluded": r["session_id"] in excluded,
            "exclusion_reason": excluded.get(r["session_id"]),
        }
        for r in rows
    ]
    return {
        "study_id": study.id,
        "placement": study.config.get("placement", "constant"),
        "data": data,
        "count": len(data),
    }
