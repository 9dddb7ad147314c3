"""Sweeps: a base launch form (or a finished run, cloned), one or two settings a sweep may vary
over values, seeds, and an optional baseline arm; checked in one pass (runconfig.sweep.plan,
then each arm as a launch form), previewed with an estimate of its training time from the
batch rates runs have measured, stored as one run per arm and seed, and sent to the workers
a few at a time (run_lifecycle.release_held). Its page's table is runconfig.sweep.table, the
same the library's command line prints from results files."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

import runconfig
from backend.core.config import get_settings
from backend.core.errors import Invalid, NotFound
from backend.core.queue import enqueue
from backend.models import Image, RunBatch, Sweep, TrainingRun
from backend.schemas.sweeps import SweepCreate
from backend.services.csv_export import csv_text
from backend.services.run_lifecycle import Enqueue, release_held
from backend.services.runs import launch
from backend.services.runs.beside import figures_beside
from runconfig import sweep as grid

# the runs whose measured batch rates estimate a new run's pace
RATE_RUNS = 10
RATE_POINTS = 500


@dataclass
class Checked:
    """A sweep that passed: its plan, and each arm's launch (the form as the runs store it)."""

    plan: grid.Plan
    form: dict[str, Any]
    launches: list[tuple[grid.Arm, launch.Launch, dict[str, Any]]]


def _refused(errors: list[dict[str, str]]) -> Invalid:
    fields = ", ".join(dict.fromkeys(e["field"] for e in errors))
    return Invalid(f"The sweep was not launched: check {fields}.", errors=errors)


def _base_form(db: Session, body: SweepCreate) -> dict[str, Any]:
    if body.clone_run_id is not None:
        run = db.get(TrainingRun, body.clone_run_id)
        if run is None:
            raise _refused([{"field": "clone_run_id", "message": "no such run"}])
        return launch.clone_form(run)
    if body.base is None:
        raise _refused(
            [{"field": "base", "message": "give a base configuration or a finished run to clone"}]
        )
    return body.base.model_dump()


def _axes(body: SweepCreate) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for axis in body.axes:
        if axis.values is not None:
            out.append((axis.setting, list(axis.values)))
        elif axis.range is not None:
            out.append((axis.setting, axis.range.model_dump()))
        else:
            out.append((axis.setting, None))
    return out


def check_sweep(db: Session, body: SweepCreate) -> Checked:
    """Check a sweep in one pass; raises Invalid with one sentence per wrong field."""
    form = _base_form(db, body)
    given = {
        k: form[k] for k in runconfig.FORM_FIELDS if form.get(k) is not None and k not in ("seed",)
    }
    plan, refusals = grid.plan(given, _axes(body), body.seeds, body.baseline)
    if plan is None:
        raise _refused([{"field": e.field, "message": e.message} for e in refusals])
    errors: list[dict[str, str]] = []
    launches = []
    configs = {arm: config for arm, _seed, config in plan.runs}
    for arm in plan.arms:
        config = configs[arm]
        arm_form = {
            **form,
            **{k: config[k] for k in runconfig.LIBRARY_FIELDS},
            "seed": None,
            "seeds": list(plan.seeds),
        }
        checked = runconfig.check_form({k: config[k] for k in runconfig.LIBRARY_FIELDS})
        for ref in runconfig.REFS:  # the baseline's method may use none of the base's objects
            if checked.applies(ref.methods, ref.when) is False:
                arm_form[ref.name] = None
        try:
            launches.append((arm, launch.validate_launch(db, arm_form), arm_form))
        except Invalid as refusal:
            for e in refusal.errors or []:
                field = grid.BASELINE if arm.baseline else e["field"]
                message = f"{e['field']}: {e['message']}" if arm.baseline else e["message"]
                if all(x["field"] != field for x in errors):
                    errors.append({"field": field, "message": message})
    if errors:
        raise _refused(errors)
    return Checked(plan, form, launches)


def _train_images(db: Session, dataset_id: int) -> int:
    return int(
        db.scalar(
            select(func.count())
            .select_from(Image)
            .where(Image.dataset_id == dataset_id, Image.split == "train")
        )
        or 0
    )


def measured_rate(db: Session, method: str, model: str, dataset_id: int) -> float | None:
    """The median images per second measured by recent runs of this method and model (of
    this dataset where there are some); None when none reported a rate."""
    recent = db.execute(
        select(TrainingRun.id, TrainingRun.config, TrainingRun.dataset_id)
        .where(TrainingRun.method == method, TrainingRun.started_at.is_not(None))
        .order_by(TrainingRun.id.desc())
        .limit(200)
    ).all()
    alike = [r for r in recent if (r.config or {}).get("model") == model]
    here = [r.id for r in alike if r.dataset_id == dataset_id][:RATE_RUNS]
    ids = here or [r.id for r in alike][:RATE_RUNS]
    if not ids:
        return None
    rates = db.scalars(
        select(RunBatch.images_per_s)
        .where(RunBatch.run_id.in_(ids), RunBatch.images_per_s.is_not(None))
        .order_by(RunBatch.id.desc())
        .limit(RATE_POINTS)
    ).all()
    positive = [r for r in rates if r and r > 0]
    return statistics.median(positive) if positive else None


def preview(db: Session, body: SweepCreate) -> dict[str, Any]:
    """How many runs a sweep launches, and their training time added up, from the batch
    rates recent runs of the same method and model measured."""
    checked = check_sweep(db, body)
    plan = checked.plan
    dataset_id = checked.form["dataset_id"]
    images = _train_images(db, dataset_id)
    total = 0.0
    unknown: list[str] = []
    rates: dict[tuple[str, str], float | None] = {}
    for arm, launched, _form in checked.launches:
        settings = launched.settings
        key = (settings.method, settings.model)
        if key not in rates:
            rates[key] = measured_rate(db, *key, dataset_id)
        rate = rates[key]
        if rate is None:
            unknown.append(arm.key)
            continue
        total += len(plan.seeds) * settings.epochs * images / rate
    in_flight = get_settings().sweep_in_flight
    if unknown:
        basis = (
            "No run of the same method and model has measured its pace yet "
            f"({', '.join(unknown)}): no estimate."
        )
    else:
        basis = (
            "Training only, added over every run, from the median images per second of recent "
            f"runs of the same method and model ({images} training images per epoch); the "
            f"final evaluation comes on top. {in_flight} of its runs train at once."
        )
    return {
        "runs": len(plan.runs),
        "arms": len(plan.arms),
        "seeds": len(plan.seeds),
        "estimated_s": None if unknown else total,
        "in_flight": in_flight,
        "basis": basis,
    }


def create_sweep(
    db: Session, user_id: int | None, body: SweepCreate, enqueue_fn: Enqueue = enqueue
) -> Sweep:
    """Check, store the sweep and one run per arm and seed (each arm one group), and send the
    first few to the workers; the rest wait their turn (run_lifecycle.release_held)."""
    checked = check_sweep(db, body)
    plan, form = checked.plan, checked.form
    name = body.name.strip() or form.get("name", "").strip() or "sweep"
    sweep = Sweep(
        name=name[:200],
        dataset_id=form["dataset_id"],
        base={k: v for k, v in form.items() if k not in ("seed", "seeds")},
        axes=[{"name": a.name, "values": list(a.values)} for a in plan.axes],
        seeds=list(plan.seeds),
        baseline=plan.baseline,
        in_flight=get_settings().sweep_in_flight,
        created_by_id=user_id,
    )
    db.add(sweep)
    db.flush()
    for arm, launched, arm_form in checked.launches:
        runs = launch.new_runs(db, launched, arm_form, f"{name} · {arm.key}"[:180], user_id)
        for run in runs:
            run.sweep_id = sweep.id
    db.commit()
    release_held(db, sweep.id, enqueue_fn)
    return sweep


def list_sweeps(db: Session, limit: int = 100) -> list[Sweep]:
    return list(db.scalars(select(Sweep).order_by(Sweep.id.desc()).limit(limit)).all())


def get_sweep(db: Session, sweep_id: int) -> Sweep:
    sweep = db.get(Sweep, sweep_id)
    if sweep is None:
        raise NotFound("Sweep not found.")
    return sweep


def _arms(sweep: Sweep) -> list[grid.Arm]:
    axes = [grid.Axis(a["name"], tuple(a["values"])) for a in sweep.axes]
    return grid.grid_arms(axes, bool(sweep.baseline))


def records(
    runs: list[Any], beside: dict[int, dict[str, float]] | None = None
) -> list[grid.Record]:
    """The table's view of runs (rows with id, config, state and final_metrics), with the
    figures the app holds beside each run's results (services.runs.beside)."""
    out = []
    for run in runs:
        metrics = run.final_metrics or {}
        final = metrics.get("final") or metrics
        figures = {**grid.figures(final), **(beside or {}).get(run.id, {})}
        out.append(grid.Record(run.id, run.config or {}, run.state, figures))
    return out


def sweep_table(
    db: Session, sweep: Sweep, margin_points: float | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """The sweep's table (runconfig.sweep.table) over its runs as they stand, and each run's
    name by id."""
    rows = db.execute(
        select(
            TrainingRun.id,
            TrainingRun.name,
            TrainingRun.config,
            TrainingRun.state,
            TrainingRun.final_metrics,
        )
        .where(TrainingRun.sweep_id == sweep.id)
        .order_by(TrainingRun.id)
    ).all()
    table = grid.table(
        records(list(rows), figures_beside(db, [r.id for r in rows])),
        [a["name"] for a in sweep.axes],
        sweep.baseline,
        _arms(sweep),
        margin_points,
    )
    return table, {str(r.id): r.name for r in rows}


def _cell(value: Any) -> Any:
    return "" if value is None else value


def export_csv(table: dict[str, Any], level: str) -> str:
    """The table as CSV: one row per run (level "runs": its arm, seed, state and figures) or
    per arm and figure ("arms": mean, interval, seeds, and the paired difference with its
    intervals and verdict)."""
    metrics: list[str] = table["metrics"]
    if level == "runs":
        header = ["run_id", "arm", "seed", "state", *metrics]
        rows = [
            [r["ref"], r["arm"], r["seed"], r["state"], *[r["figures"].get(m) for m in metrics]]
            for r in table["runs"]
        ]
        return csv_text(header, rows)
    header = [
        "arm", "metric", "mean", "low", "high", "n", "succeeded", "failed", "cancelled",
        "diff_mean", "diff_low", "diff_high", "boot_low", "boot_high", "pairs", "verdict",
    ]  # fmt: skip
    out = []
    for arm in table["arms"]:
        for m in metrics:
            stat = arm["metrics"].get(m)
            if stat is None:
                continue
            paired = arm["paired"].get(m) or {}
            out.append(
                [
                    arm["key"],
                    m,
                    stat["mean"],
                    _cell(stat["low"]),
                    _cell(stat["high"]),
                    stat["n"],
                    arm["succeeded"],
                    arm["failed"],
                    arm["cancelled"],
                    *[_cell(paired.get(k)) for k in ("mean", "low", "high", "boot_low")],
                    _cell(paired.get("boot_high")),
                    _cell(paired.get("n")),
                    paired.get("text", ""),
                ]  # fmt: skip
            )
    return csv_text(header, out)
