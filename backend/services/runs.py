"""Training runs: validate a launch, store its config, queue it; clone; read progress for the
dashboard; compare runs and average seeds.

Every change of a run's state (dispatch, cancel, retry, the worker's claim, reports and
finish, orphans) is in backend/services/run_lifecycle.py; the API only enqueues by task name.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from backend.core.errors import Invalid, NotFound
from backend.core.queue import enqueue
from backend.core.run_contract import ConfigError, TrainConfig
from backend.core.run_contract import choices as contract_choices
from backend.core.storage import Storage
from backend.models import (
    FINISHED_STATES,
    Dataset,
    MaskSet,
    RunBatch,
    RunEpoch,
    TrainingRun,
    utcnow,
)
from backend.services.run_lifecycle import aware, dispatch

_logger = logging.getLogger(__name__)

Enqueue = Callable[..., str]

# Launch-form fields handed to the training library under the same name.
LIBRARY_FIELDS = (
    "method",
    "model",
    "eps",
    "alpha",
    "steps",
    "eps_warmup_epochs",
    "epochs",
    "batch_size",
    "lr",
    "schedule",
    "momentum",
    "weight_decay",
    "image_size",
    "augment",
    "hflip",
    "mask_source",
    "mask_threshold",
    "mask_fraction",
    "fast_attack",
    "part_warmup_epochs",
    "part_eps_low",
    "igd_lambda",
    "igd_grad_point",
    "eval_eps",
    "eval_subset",
    "eval_steps",
    "eval_restarts",
    "epoch_eval_steps",
    "autoattack_n",
    "precision",
    "compile",
    "data_loader",
    "gpus",
    "sync_batchnorm",
)
# References to app objects kept in the stored config; the worker turns them into paths.
APP_REFS = ("mask_set_id", "auto_mask_run_id", "igd_teacher_run_id")
# Library fields the worker fills in (paths and hardware), never stored from the form.
WORKER_FIELDS = ("data_dir", "auto_mask_model", "igd_teacher", "device", "threads")
SIP_METHODS = ("sip_at", "fast_sip_at")
AUTO_MASK_SOURCES = ("gradcam", "input_gradient")
MAX_SEEDS = 20
# Upper bounds that keep one form from occupying a worker for weeks by mistake.
LIMITS = {
    "epochs": 1000,
    "batch_size": 4096,
    "steps": 1000,
    "image_size": 1024,
    "eval_steps": 1000,
    "eval_restarts": 100,
    "epoch_eval_steps": 1000,
    "autoattack_n": 100_000,
}
SORTABLE = {
    "created_at": TrainingRun.created_at,
    "name": TrainingRun.name,
    "method": TrainingRun.method,
    "state": TrainingRun.state,
    "id": TrainingRun.id,
    "progress": TrainingRun.progress,
    "finished_at": TrainingRun.finished_at,
}


def _refused_launch(errors: list[dict[str, str]]) -> Invalid:
    """The launch form's refusal: one message per wrong field, and a sentence naming them."""
    fields = ", ".join(dict.fromkeys(e["field"] for e in errors))
    return Invalid(f"The run was not launched: check {fields}.", errors=errors)


def _library() -> tuple[type[ConfigError], type[TrainConfig]]:
    # The run configuration's own validation (backend/core/run_contract.py, the generated
    # copy of worker/contract.py that the worker and the training library use): the form
    # and the worker cannot disagree on what a valid config is.
    return ConfigError, TrainConfig


def runs_by_ids(db: Session, ids: list[int]) -> list[TrainingRun]:
    """The runs with these ids, in this order; NotFound if any is missing."""
    runs = [db.get(TrainingRun, i) for i in ids]
    found = [r for r in runs if r is not None]
    if len(found) != len(runs):
        raise NotFound("Run not found.")
    return found


def form_choices() -> dict[str, list[Any]]:
    """The values the launch form offers for each fixed-set field (the contract's)."""
    return contract_choices()


def library_defaults() -> dict[str, Any]:
    """The library's default value of every launch-form field."""
    _, train_config = _library()
    d = train_config().to_dict()
    return {k: d[k] for k in LIBRARY_FIELDS}


def _check_library_fields(fields: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """Validate each field through TrainConfig.from_dict, collecting one error per field."""
    config_error, train_config = _library()
    errors: list[dict[str, str]] = []
    method = fields.get("method", "pgd_at")
    # Placeholders satisfy the library's "needs a checkpoint" rules; the form names the
    # runs behind them and those are checked separately.
    base: dict[str, Any] = {"auto_mask_model": "placeholder", "igd_teacher": "placeholder"}
    try:
        train_config.from_dict({**base, "method": method})
        base["method"] = method
    except config_error as exc:
        errors.append({"field": "method", "message": exc.message})
    for key, value in fields.items():
        if key == "method":
            continue
        try:
            train_config.from_dict({**base, key: value})
        except config_error as exc:
            if exc.field == key:
                errors.append({"field": key, "message": exc.message})
        limit = LIMITS.get(key)
        if limit is not None and isinstance(value, int) and value > limit:
            errors.append({"field": key, "message": f"must be at most {limit}"})
    if errors:
        return {}, errors
    try:
        cfg = train_config.from_dict({**base, **fields})
    except config_error as exc:
        return {}, [{"field": exc.field, "message": exc.message}]
    full = cfg.to_dict()
    return {k: full[k] for k in LIBRARY_FIELDS}, []


def _finished_run(
    db: Session, run_id: int, field: str, dataset_id: int, errors: list[dict[str, str]]
) -> TrainingRun | None:
    run = db.get(TrainingRun, run_id)
    if run is None:
        errors.append({"field": field, "message": f"run {run_id} does not exist"})
    elif run.state != "succeeded":
        errors.append({"field": field, "message": f"run {run_id} has not finished successfully"})
    elif run.dataset_id != dataset_id:
        errors.append({"field": field, "message": f"run {run_id} was trained on another dataset"})
    else:
        return run
    return None


def validate_launch(db: Session, form: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
    """Check a launch form; returns (stored config without the seed, seeds) or raises
    Invalid naming every bad field."""
    errors: list[dict[str, str]] = []
    dataset = db.get(Dataset, form["dataset_id"])
    if dataset is None:
        errors.append({"field": "dataset_id", "message": "no such dataset"})

    seeds: list[int] = []
    if form.get("seed") is not None and form.get("seeds"):
        errors.append(
            {"field": "seeds", "message": "give either one seed or a list of seeds, not both"}
        )
    elif form.get("seeds") is not None:
        seeds = list(form["seeds"])
        if not seeds:
            errors.append({"field": "seeds", "message": "must hold at least one seed"})
        elif len(seeds) > MAX_SEEDS:
            errors.append({"field": "seeds", "message": f"at most {MAX_SEEDS} seeds at once"})
        elif len(set(seeds)) != len(seeds):
            errors.append({"field": "seeds", "message": "each seed may appear only once"})
        elif any(s < 0 for s in seeds):
            errors.append({"field": "seeds", "message": "seeds must be >= 0"})
    else:
        seeds = [form["seed"] if form.get("seed") is not None else 0]
        if seeds[0] < 0:
            errors.append({"field": "seed", "message": "must be >= 0"})

    for tag in form.get("tags") or []:
        if not tag.strip() or len(tag) > 50:
            errors.append({"field": "tags", "message": "each tag must be 1 to 50 characters"})
            break
    if form.get("eval_eps") is not None and not 1 <= len(form["eval_eps"]) <= 16:
        errors.append({"field": "eval_eps", "message": "give between 1 and 16 epsilons"})

    given = {k: form[k] for k in LIBRARY_FIELDS if form.get(k) is not None}
    eps = given.get("eps")
    if "part_eps_low" not in given and isinstance(eps, (int, float)) and 0 <= eps <= 1:
        # the library checks part_eps_low <= eps for every method: a small eps must not
        # trip over PART's default low budget on a run that is not PART
        given["part_eps_low"] = min(library_defaults()["part_eps_low"], eps)
    library_config, library_errors = _check_library_fields(given)
    errors.extend(e for e in library_errors if not any(x["field"] == e["field"] for x in errors))
    method = given.get("method", "pgd_at")
    mask_source = given.get("mask_source", "human")

    refs: dict[str, Any] = dict.fromkeys(APP_REFS)
    if dataset is not None:
        mask_set_id = form.get("mask_set_id")
        if mask_set_id is not None:
            mask_set = db.get(MaskSet, mask_set_id)
            if mask_set is None:
                errors.append({"field": "mask_set_id", "message": "no such mask set"})
            elif mask_set.dataset_id != dataset.id:
                errors.append(
                    {"field": "mask_set_id", "message": "this mask set belongs to another dataset"}
                )
            else:
                refs["mask_set_id"] = mask_set_id
        elif method in SIP_METHODS and mask_source == "human":
            errors.append(
                {
                    "field": "mask_set_id",
                    "message": "SIP-AT with human masks needs a frozen mask set of this dataset",
                }
            )

        auto_run_id = form.get("auto_mask_run_id")
        if method in SIP_METHODS and mask_source in AUTO_MASK_SOURCES:
            if auto_run_id is None:
                errors.append(
                    {
                        "field": "auto_mask_run_id",
                        "message": "automatic masks need a finished run whose model makes them",
                    }
                )
            elif _finished_run(db, auto_run_id, "auto_mask_run_id", dataset.id, errors) is not None:
                refs["auto_mask_run_id"] = auto_run_id
        elif auto_run_id is not None:
            errors.append(
                {
                    "field": "auto_mask_run_id",
                    "message": "only used by SIP-AT with automatic (gradcam, input_gradient) masks",
                }
            )

        teacher_id = form.get("igd_teacher_run_id")
        if method == "igd":
            if teacher_id is None:
                errors.append(
                    {
                        "field": "igd_teacher_run_id",
                        "message": "IGD needs a finished standard run as its teacher",
                    }
                )
            else:
                teacher = _finished_run(db, teacher_id, "igd_teacher_run_id", dataset.id, errors)
                if teacher is not None and teacher.method != "standard":
                    errors.append(
                        {
                            "field": "igd_teacher_run_id",
                            "message": "the teacher must be a standard run",
                        }
                    )
                elif teacher is not None and teacher.config.get("model") != library_config.get(
                    "model", teacher.config.get("model")
                ):
                    errors.append(
                        {
                            "field": "igd_teacher_run_id",
                            "message": "the teacher must use the same model as the student",
                        }
                    )
                elif teacher is not None:
                    refs["igd_teacher_run_id"] = teacher_id
        elif teacher_id is not None:
            errors.append({"field": "igd_teacher_run_id", "message": "only used by IGD"})

    if errors:
        raise _refused_launch(errors)
    return {**library_config, **refs}, seeds


def create_runs(
    db: Session,
    user_id: int | None,
    form: dict[str, Any],
    enqueue_fn: Enqueue = enqueue,
    cloned_from_id: int | None = None,
) -> list[TrainingRun]:
    """Validate, store one run per seed (one group), queue them."""
    config, seeds = validate_launch(db, form)
    dataset = db.get(Dataset, form["dataset_id"])
    assert dataset is not None
    mask_set = db.get(MaskSet, config["mask_set_id"]) if config["mask_set_id"] else None
    group_key = uuid.uuid4().hex[:16]
    name = form.get("name", "").strip() or f"{config['method']} {config['model']}"
    if cloned_from_id is not None and db.get(TrainingRun, cloned_from_id) is None:
        cloned_from_id = None
    runs = []
    for seed in seeds:
        run = TrainingRun(
            name=name if len(seeds) == 1 else f"{name} (seed {seed})",
            group_key=group_key,
            tags=sorted({t.strip() for t in form.get("tags") or []}),
            dataset_id=dataset.id,
            mask_set_id=config["mask_set_id"],
            method=config["method"],
            config={**config, "seed": seed},
            state="queued",
            total_epochs=config["epochs"],
            # lineage frozen at launch; the worker completes the record
            reproducibility={
                "seed": seed,
                "dataset_content_hash": dataset.content_hash,
                "mask_set_id": mask_set.id if mask_set else None,
                "mask_set_hash": mask_set.hash if mask_set else None,
            },
            created_by_id=user_id,
            cloned_from_id=cloned_from_id,
        )
        db.add(run)
        runs.append(run)
    db.commit()
    for run in runs:
        dispatch(db, run, enqueue_fn)
    return runs


def list_runs(
    db: Session,
    *,
    dataset_id: int | None = None,
    method: str | None = None,
    state: str | None = None,
    tag: str | None = None,
    group_key: str | None = None,
    sort: str = "-created_at",
    limit: int = 200,
    offset: int = 0,
) -> tuple[list[TrainingRun], int]:
    q = select(TrainingRun)
    if dataset_id is not None:
        q = q.where(TrainingRun.dataset_id == dataset_id)
    if method:
        q = q.where(TrainingRun.method == method)
    if state:
        q = q.where(TrainingRun.state == state)
    if group_key:
        q = q.where(TrainingRun.group_key == group_key)
    desc = sort.startswith("-")
    column = SORTABLE.get(sort.lstrip("-"), TrainingRun.created_at)
    q = q.order_by(column.desc() if desc else column.asc(), TrainingRun.id.desc())
    if tag:
        # tags are a JSON list, filtered here (JSON containment differs between PostgreSQL
        # and SQLite); only a tag filter reads every matching run
        runs = [r for r in db.scalars(q).all() if tag in (r.tags or [])]
        return runs[offset : offset + limit], len(runs)
    total = db.scalar(select(func.count()).select_from(q.order_by(None).subquery())) or 0
    return list(db.scalars(q.limit(limit).offset(offset)).all()), total


def dataset_names(db: Session, runs: Iterable[TrainingRun]) -> dict[int, str]:
    ids = {r.dataset_id for r in runs}
    if not ids:
        return {}
    return dict(db.execute(select(Dataset.id, Dataset.name).where(Dataset.id.in_(ids))).all())


# The live curves a run's page loads at once; a longer run's points are thinned evenly.
BATCH_POINTS_MAX = 4000


def batch_rows(db: Session, run_id: int, after_step: int = 0) -> list[RunBatch]:
    """The run's per-batch points after `after_step`, in step order."""
    q = select(RunBatch).where(RunBatch.run_id == run_id, RunBatch.step > after_step)
    return list(db.scalars(q.order_by(RunBatch.step)).all())


def thinned(rows: Sequence[RunBatch], keep: int = BATCH_POINTS_MAX) -> list[RunBatch]:
    """At most `keep` of the points, evenly spaced, the last one always among them."""
    if len(rows) <= keep:
        return list(rows)
    stride = math.ceil(len(rows) / keep)
    picked = list(rows[::stride])
    if picked[-1] is not rows[-1]:
        picked.append(rows[-1])
    return picked


def batch_point(row: RunBatch) -> dict[str, Any]:
    return {
        "step": row.step,
        "epoch": row.epoch,
        "loss": row.loss,
        "accuracy": row.accuracy,
        "images_per_s": row.images_per_s,
        "created_at": (aware(row.created_at) or utcnow()).isoformat(),
    }


def batches_per_epoch(run: TrainingRun) -> int | None:
    n = (run.reproducibility or {}).get("batches_per_epoch")
    return n if isinstance(n, int) and n > 0 else None


def pace_points(db: Session, run: TrainingRun) -> list[RunBatch]:
    """The first per-batch point stored since the run (re)started and the last one: what
    time_left_s measures the batch rate between."""
    if run.state != "running" or run.started_at is None:
        return []
    since = select(RunBatch).where(RunBatch.run_id == run.id, RunBatch.created_at >= run.started_at)
    first = db.scalars(since.order_by(RunBatch.created_at, RunBatch.step).limit(1)).first()
    last = db.scalars(since.order_by(RunBatch.step.desc()).limit(1)).first()
    return [p for p in (first, last) if p is not None]


def system_figures(run: TrainingRun) -> dict[str, Any] | None:
    """The latest device, peak memory (bytes) and images per second the worker reported."""
    figures = (run.reproducibility or {}).get("system")
    return figures if isinstance(figures, dict) and figures else None


def time_left_s(
    run: TrainingRun, points: Sequence[RunBatch] = (), now: datetime | None = None
) -> float | None:
    """Seconds left: from the measured batch rate (the per-batch points stored since the run
    (re)started, which also counts the per-epoch checks once an epoch has passed), else from
    the pace of the epochs finished since then."""
    if run.state != "running" or run.started_at is None or run.total_epochs <= 0:
        return None
    now = now or utcnow()
    started = aware(run.started_at)
    assert started is not None
    per_epoch_batches = batches_per_epoch(run)
    since = [p for p in points if (aware(p.created_at) or now) >= started]
    if per_epoch_batches and len(since) >= 2:
        first, last = since[0], since[-1]
        last_at = aware(last.created_at) or now
        span = (last_at - (aware(first.created_at) or now)).total_seconds()
        if span > 0 and last.step > first.step:
            rate = (last.step - first.step) / span  # batches per second
            steps_left = max(0, per_epoch_batches * run.total_epochs - last.step)
            return max(0.0, steps_left / rate - (now - last_at).total_seconds())
    recent = [e for e in run.epochs if aware(e.created_at) >= started]  # type: ignore[operator]
    if not recent:
        return None
    per_epoch = ((aware(recent[-1].created_at) or now) - started).total_seconds() / len(recent)
    remaining = max(0, run.total_epochs - run.current_epoch)
    since_last = (now - (aware(recent[-1].created_at) or now)).total_seconds()
    return max(0.0, per_epoch * remaining - since_last) if remaining else 0.0


# ------------------------------------------------------------------ the live stream


@dataclass
class LiveCursor:
    """What a run's event stream has sent so far."""

    after_step: int = 0
    after_epoch: int = 0
    run: dict[str, Any] = field(default_factory=dict)
    log_tail: str | None = None


def run_summary(run: TrainingRun, points: Sequence[RunBatch]) -> dict[str, Any]:
    """The fields of a run that change while it trains (the stream's "run" event)."""
    left = time_left_s(run, points)
    return {
        "id": run.id,
        "state": run.state,
        "progress": run.progress,
        "current_epoch": run.current_epoch,
        "total_epochs": run.total_epochs,
        "time_left_s": None if left is None else round(left),
        "cancel_requested": run.cancel_requested,
        "error": run.error,
        "attempts": run.attempts,
        "batches_per_epoch": batches_per_epoch(run),
        "system": system_figures(run),
    }


def live_events(
    sessions: sessionmaker[Session], run_id: int, cursor: LiveCursor
) -> tuple[list[tuple[str, Any]], bool]:
    """What happened to a run since `cursor` (which moves on), read in one short session:
    events [(name, data)] ("run" when its state, progress or time left changed, "log",
    "epoch" and "batch" with the new rows, "end" once it has finished) and whether it has."""
    events: list[tuple[str, Any]] = []
    with sessions() as db:
        run = db.get(TrainingRun, run_id)
        if run is None:
            return [("end", {"state": "deleted"})], True
        epochs = db.scalars(
            select(RunEpoch)
            .where(RunEpoch.run_id == run_id, RunEpoch.epoch > cursor.after_epoch)
            .order_by(RunEpoch.epoch)
        ).all()
        new_points = batch_rows(db, run_id, cursor.after_step)
        summary = run_summary(run, pace_points(db, run))
        if summary != cursor.run:
            events.append(("run", summary))
            cursor.run = summary
        if run.log_tail != cursor.log_tail:
            events.append(("log", {"log_tail": run.log_tail}))
            cursor.log_tail = run.log_tail
        if epochs:
            events.append(
                (
                    "epoch",
                    [
                        {
                            "epoch": e.epoch,
                            "metrics": e.metrics,
                            "created_at": (aware(e.created_at) or utcnow()).isoformat(),
                        }
                        for e in epochs
                    ],
                )
            )
            cursor.after_epoch = epochs[-1].epoch
        if new_points:
            events.append(("batch", [batch_point(p) for p in thinned(new_points)]))
            cursor.after_step = new_points[-1].step
        finished = run.state in FINISHED_STATES
        db.rollback()  # nothing was written: end the read transaction before the next poll
    if finished:
        events.append(("end", {"state": summary["state"]}))
    return events, finished


def clone_form(run: TrainingRun) -> dict[str, Any]:
    """The launch form filled with a run's settings (for "clone and edit")."""
    form: dict[str, Any] = {k: run.config.get(k) for k in LIBRARY_FIELDS if k in run.config}
    for k in APP_REFS:
        form[k] = run.config.get(k)
    form.update(
        dataset_id=run.dataset_id,
        seed=run.config.get("seed", 0),
        seeds=None,
        tags=list(run.tags or []),
        name=f"{run.name} (clone)"[:200],
    )
    return form


def _flat(run: TrainingRun) -> dict[str, Any]:
    d = {
        "dataset_id": run.dataset_id,
        **{k: v for k, v in run.config.items() if k not in WORKER_FIELDS},
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


def group_runs(runs: Sequence[TrainingRun], by: str) -> list[dict[str, Any]]:
    """Succeeded runs grouped by one setting, with mean +- std of their final metrics."""
    groups: dict[Any, list[TrainingRun]] = {}
    for run in runs:
        if run.state != "succeeded":
            continue
        value = run.group_key if by == "group_key" else _flat(run).get(by)
        groups.setdefault(value, []).append(run)
    out = []
    for value, members in groups.items():
        summaries = [final_summary(r) for r in members]
        keys = sorted(set().union(*summaries))
        metrics = {}
        for k in keys:
            vals = [s[k] for s in summaries if k in s]
            mean, std = mean_std(vals)
            metrics[k] = {"mean": mean, "std": std, "n": len(vals)}
        out.append(
            {
                "value": list(value) if isinstance(value, tuple) else value,
                "run_ids": [r.id for r in members],
                "seeds": [r.config.get("seed") for r in members],
                "metrics": metrics,
            }
        )
    out.sort(key=lambda g: str(g["value"]))
    return out


def run_out_key(run_id: int) -> str:
    return f"runs/{run_id}/out"


def run_data_key(run_id: int) -> str:
    return f"runs/{run_id}/data"


DOWNLOADS = {"final.pt": "application/octet-stream", "metrics.json": "application/json"}


def salience_summary(run: TrainingRun, storage: Storage) -> dict[str, Any]:
    """What the worker wrote to out/salience/salience.json, with URLs for its PNGs."""
    import json

    key = f"{run_out_key(run.id)}/salience/salience.json"
    if not storage.exists(key):
        return {"available": False}
    record = json.loads(storage.get_bytes(key))
    base = f"/api/runs/{run.id}/salience/"
    samples = [
        {
            "image_id": s.get("image_id"),
            "label": s.get("label", ""),
            "predicted": s.get("predicted"),
            "agreement": s.get("agreement"),
            "image_url": base + s["image"],
            "model_url": base + s["model"],
            "human_url": base + s["human"] if s.get("human") else None,
        }
        for s in record.get("samples", [])
    ]
    return {
        "available": True,
        "kind": record.get("kind"),
        "agreement": record.get("agreement"),
        "samples": samples,
    }
