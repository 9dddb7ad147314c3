"""Runs side by side: the settings that differ and those they share, robust accuracy
against eps, and runs grouped by one setting with their final metrics averaged over seeds."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

import runconfig
from backend.core.errors import NotFound
from backend.models import TrainingRun
from runconfig import stats


def runs_by_ids(db: Session, ids: list[int]) -> list[TrainingRun]:
    """The runs with these ids, in this order; NotFound if any is missing."""
    # one query for the runs and one for their epochs (the curves), however many runs
    loaded = db.scalars(
        select(TrainingRun).where(TrainingRun.id.in_(ids)).options(selectinload(TrainingRun.epochs))
    ).all()
    by_id = {r.id: r for r in loaded}
    if len(by_id) != len(set(ids)):
        raise NotFound("Run not found.")
    return [by_id[i] for i in ids]


def _flat(run: TrainingRun) -> dict[str, Any]:
    d = {
        "dataset_id": run.dataset_id,
        **{k: v for k, v in run.config.items() if k not in runconfig.WORKER_FIELDS},
    }
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


def config_diff(runs: Sequence[TrainingRun]) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """(settings that differ: key -> value per run, settings all runs share)."""
    flats = [_flat(r) for r in runs]
    keys = sorted(set().union(*flats)) if flats else []
    differences: dict[str, list[Any]] = {}
    same: dict[str, Any] = {}
    for k in keys:
        values = [f.get(k) for f in flats]
        if all(v == values[0] for v in values):
            same[k] = list(values[0]) if isinstance(values[0], tuple) else values[0]
        else:
            differences[k] = [list(v) if isinstance(v, tuple) else v for v in values]
    return differences, same


def robust_vs_eps(run: TrainingRun) -> dict[str, float]:
    final = (run.final_metrics or {}).get("final") or run.final_metrics or {}
    pgd = final.get("pgd_accuracy") or {}
    return {str(k): float(v) for k, v in pgd.items()}


def final_summary(run: TrainingRun) -> dict[str, float]:
    """The numbers averaged across seeds: clean, AutoAttack at the training eps (when it ran),
    PGD per eps, salience agreement."""
    final = (run.final_metrics or {}).get("final") or run.final_metrics or {}
    out: dict[str, float] = {}
    if isinstance(final.get("clean_accuracy"), (int, float)):
        out["clean_accuracy"] = float(final["clean_accuracy"])
    autoattack = final.get("autoattack") or {}
    if isinstance(autoattack.get("accuracy"), (int, float)):
        out["autoattack_accuracy"] = float(autoattack["accuracy"])
    for eps, acc in robust_vs_eps(run).items():
        out[f"pgd_accuracy@{eps}"] = acc
    agreement = final.get("salience_agreement") or {}
    if isinstance(agreement.get("top_mass_in_mask"), (int, float)):
        out["salience_top_mass_in_mask"] = float(agreement["top_mass_in_mask"])
    if run.epochs:
        last = run.epochs[-1].metrics
        for k in ("train_loss", "robust_accuracy"):
            if isinstance(last.get(k), (int, float)):
                out[f"last_epoch_{k}"] = float(last[k])
    return out


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def _names(text: str, value: Any) -> bool:
    """Whether a baseline given as text names a group's value: as Python writes it, or as JSON
    reads it (a browser writes the value 1.0 as 1)."""
    if str(value) == text:
        return True
    try:
        parsed = json.loads(text)
    except ValueError:
        return False
    return bool(parsed == value) and not isinstance(parsed, bool) and not isinstance(value, bool)


def group_runs(
    runs: Sequence[TrainingRun],
    by: str,
    baseline: str | None = None,
    margin_points: float | None = None,
    beside: dict[int, dict[str, float]] | None = None,
) -> list[dict[str, Any]]:
    """Succeeded runs grouped by one setting, with mean +- std of their final metrics (and of
    the figures `beside` them: services.runs.beside), their 95 % t interval, and (given the
    baseline group's value, as text) each group minus the baseline paired by seed: t and
    bootstrap intervals and the verdict at the margin (runconfig.stats, as a sweep's page)."""
    groups: dict[Any, list[TrainingRun]] = {}
    summary: dict[int, dict[str, float]] = {}
    for run in runs:
        if run.state != "succeeded":
            continue
        value = run.group_key if by == "group_key" else _flat(run).get(by)
        groups.setdefault(value, []).append(run)
        summary[run.id] = {**final_summary(run), **(beside or {}).get(run.id, {})}
    out: list[dict[str, Any]] = []
    for value, members in groups.items():
        summaries = [summary[r.id] for r in members]
        keys = sorted(set().union(*summaries))
        metrics = {}
        for k in keys:
            vals = [s[k] for s in summaries if k in s]
            mean, std = mean_std(vals)
            t = stats.mean_interval(vals)
            metrics[k] = {"mean": mean, "std": std, "n": len(vals), "low": t.low, "high": t.high}
        out.append(
            {
                "value": list(value) if isinstance(value, tuple) else value,
                "run_ids": [r.id for r in members],
                "seeds": [r.config.get("seed") for r in members],
                "metrics": metrics,
                "paired": {},
            }
        )
    out.sort(key=lambda g: str(g["value"]))
    base = next((g for g in out if baseline is not None and _names(baseline, g["value"])), None)
    if base is None:
        return out
    base_runs = groups[_hashable(base["value"])]
    for group, members in ((g, groups[_hashable(g["value"])]) for g in out if g is not base):
        for k in group["metrics"]:
            ours, theirs = _by_seed(members, k, summary), _by_seed(base_runs, k, summary)
            difference = stats.paired_difference(ours, theirs)
            if difference is None:
                continue
            pairs = [ours[s] - theirs[s] for s in difference.seeds]
            group["paired"][k] = {
                **difference.as_dict(),
                **stats.verdict(pairs, margin_points),
            }
    return out


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _by_seed(
    runs: Sequence[TrainingRun], key: str, summary: dict[int, dict[str, float]]
) -> dict[Any, float]:
    """One figure of runs (from their `summary` by id) by their seed (a seed's first run where
    two share one)."""
    out: dict[Any, float] = {}
    for run in runs:
        value = summary[run.id].get(key)
        seed = run.config.get("seed")
        if value is not None and seed not in out:
            out[seed] = value
    return out
