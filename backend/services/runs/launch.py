"""Launching training runs: the form checked in one pass (its settings by runconfig, which
names every bad one; then the seeds and the app objects it names), one run per seed stored
as a group and queued; the form's description (GET /api/runs/defaults); and a run's
settings as a form again, to clone it."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

import runconfig
from backend.core.errors import Invalid, Unavailable
from backend.core.queue import enqueue
from backend.models import Dataset, MaskSet, TrainingRun
from backend.services.run_lifecycle import QUEUE_DOWN, dispatch

Enqueue = Callable[..., str]

MAX_SEEDS = 20


def form_description() -> dict[str, Any]:
    """What the launch form offers: the library's defaults, the choices of its fixed-set
    fields, and every setting described (runconfig.describe: sections, fields with their
    bounds and the methods they apply to, references to app objects)."""
    choices = runconfig.choices()
    return {
        "defaults": runconfig.library_defaults(),
        "methods": list(runconfig.METHODS),
        "choices": choices,
        **runconfig.describe(),
    }


@dataclass
class Launch:
    """A launch form that passed: the config stored with every run (without its seed), the
    seeds (one run each), and the settings as the library reads them."""

    config: dict[str, Any]
    seeds: list[int]
    settings: runconfig.TrainConfig


def _refused_launch(errors: list[dict[str, str]]) -> Invalid:
    """The launch form's refusal: one message per wrong field, and a sentence naming them."""
    fields = ", ".join(dict.fromkeys(e["field"] for e in errors))
    return Invalid(f"The run was not launched: check {fields}.", errors=errors)


def _seeds(form: dict[str, Any], errors: list[dict[str, str]]) -> list[int]:
    """One seed (the setting's own check is runconfig's), or a list of them (one run each)."""
    seed = form.get("seed")
    listed = form.get("seeds")
    if seed is not None and listed:
        errors.append(
            {"field": "seeds", "message": "give either one seed or a list of seeds, not both"}
        )
        return []
    if listed is None:
        return [seed if seed is not None else runconfig.DEFAULTS["seed"]]
    seeds = list(listed)
    if not seeds:
        errors.append({"field": "seeds", "message": "must hold at least one seed"})
    elif len(seeds) > MAX_SEEDS:
        errors.append({"field": "seeds", "message": f"at most {MAX_SEEDS} seeds at once"})
    elif len(set(seeds)) != len(seeds):
        errors.append({"field": "seeds", "message": "each seed may appear only once"})
    elif any(s < 0 for s in seeds):
        errors.append({"field": "seeds", "message": "seeds must be >= 0"})
    return seeds


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


def _references(
    db: Session,
    form: dict[str, Any],
    dataset: Dataset,
    checked: runconfig.Checked,
    errors: list[dict[str, str]],
) -> dict[str, Any]:
    """The app objects the form names in place of paths (runconfig.REFS), checked: each
    given where it applies, and belonging to the run's dataset. Where a setting it depends on
    was refused, whether it applies is unknown and nothing more is said of it."""
    refs: dict[str, Any] = dict.fromkeys(runconfig.APP_REFS)
    needed = {ref.name: checked.applies(ref.methods, ref.when) for ref in runconfig.REFS}

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
    elif needed["mask_set_id"]:
        errors.append(
            {
                "field": "mask_set_id",
                "message": "SIP-AT with human masks needs a frozen mask set of this dataset",
            }
        )

    auto_run_id = form.get("auto_mask_run_id")
    if needed["auto_mask_run_id"]:
        if auto_run_id is None:
            errors.append(
                {
                    "field": "auto_mask_run_id",
                    "message": "automatic masks need a finished run whose model makes them",
                }
            )
        elif _finished_run(db, auto_run_id, "auto_mask_run_id", dataset.id, errors) is not None:
            refs["auto_mask_run_id"] = auto_run_id
    elif auto_run_id is not None and needed["auto_mask_run_id"] is False:
        errors.append(
            {
                "field": "auto_mask_run_id",
                "message": "only used by SIP-AT with automatic (gradcam, input_gradient) masks",
            }
        )

    teacher_id = form.get("igd_teacher_run_id")
    if needed["igd_teacher_run_id"]:
        if teacher_id is None:
            errors.append(
                {
                    "field": "igd_teacher_run_id",
                    "message": "IGD needs a finished standard run as its teacher",
                }
            )
            return refs
        teacher = _finished_run(db, teacher_id, "igd_teacher_run_id", dataset.id, errors)
        if teacher is None:
            return refs
        student = checked.values["model"]
        if teacher.method != "standard":
            errors.append(
                {"field": "igd_teacher_run_id", "message": "the teacher must be a standard run"}
            )
        elif "model" not in checked.refused and teacher.config.get("model") != student:
            errors.append(
                {
                    "field": "igd_teacher_run_id",
                    "message": "the teacher must use the same model as the student",
                }
            )
        else:
            refs["igd_teacher_run_id"] = teacher_id
    elif teacher_id is not None and needed["igd_teacher_run_id"] is False:
        errors.append({"field": "igd_teacher_run_id", "message": "only used by IGD"})
    return refs


def validate_launch(db: Session, form: dict[str, Any]) -> Launch:
    """Check a launch form; raises Invalid naming every bad field."""
    errors: list[dict[str, str]] = []
    dataset = db.get(Dataset, form["dataset_id"])
    if dataset is None:
        errors.append({"field": "dataset_id", "message": "no such dataset"})
    seeds = _seeds(form, errors)
    for tag in form.get("tags") or []:
        if not tag.strip() or len(tag) > 50:
            errors.append({"field": "tags", "message": "each tag must be 1 to 50 characters"})
            break

    given = {k: form[k] for k in runconfig.FORM_FIELDS if form.get(k) is not None}
    checked = runconfig.check_form(given)
    errors += [{"field": e.field, "message": e.message} for e in checked.errors]
    refs = _references(db, form, dataset, checked, errors) if dataset is not None else {}

    if errors:
        raise _refused_launch(errors)
    config = {k: checked.values[k] for k in runconfig.LIBRARY_FIELDS}
    return Launch({**config, **refs}, seeds, checked.config())


def create_runs(
    db: Session,
    user_id: int | None,
    form: dict[str, Any],
    enqueue_fn: Enqueue = enqueue,
    cloned_from_id: int | None = None,
) -> list[TrainingRun]:
    """Validate, store one run per seed (one group), queue them."""
    launch = validate_launch(db, form)
    name = form.get("name", "").strip() or f"{launch.settings.method} {launch.settings.model}"
    if cloned_from_id is not None and db.get(TrainingRun, cloned_from_id) is None:
        cloned_from_id = None
    runs = new_runs(db, launch, form, name, user_id, cloned_from_id=cloned_from_id)
    db.commit()
    for n, run in enumerate(runs):
        if not dispatch(db, run, enqueue_fn):
            # the broker is down: the group's other runs are kept as failed without waiting
            # on it again, and the launch is answered 503
            for rest in runs[n + 1 :]:
                dispatch(db, rest, _queue_was_down)
            raise Unavailable(QUEUE_DOWN)
    return runs


def _queue_was_down(*_args: object) -> str:
    raise ConnectionError("the task queue was down a moment ago")


def new_runs(
    db: Session,
    launch: Launch,
    form: dict[str, Any],
    name: str,
    user_id: int | None,
    *,
    cloned_from_id: int | None = None,
    sweep_id: int | None = None,
) -> list[TrainingRun]:
    """One run per seed of a launch that passed, one group, added to the session (neither
    committed nor queued)."""
    config, settings = launch.config, launch.settings
    dataset = db.get(Dataset, form["dataset_id"])
    assert dataset is not None
    mask_set = db.get(MaskSet, config["mask_set_id"]) if config["mask_set_id"] else None
    group_key = uuid.uuid4().hex[:16]
    runs = []
    for seed in launch.seeds:
        run = TrainingRun(
            name=name if len(launch.seeds) == 1 else f"{name} (seed {seed})",
            group_key=group_key,
            tags=sorted({t.strip() for t in form.get("tags") or []}),
            dataset_id=dataset.id,
            mask_set_id=config["mask_set_id"],
            method=settings.method,
            config={**config, "seed": seed},
            state="queued",
            total_epochs=settings.epochs,
            # lineage frozen at launch; the worker completes the record
            reproducibility={
                "seed": seed,
                "dataset_content_hash": dataset.content_hash,
                "mask_set_id": mask_set.id if mask_set else None,
                "mask_set_hash": mask_set.hash if mask_set else None,
            },
            created_by_id=user_id,
            cloned_from_id=cloned_from_id,
            sweep_id=sweep_id,
        )
        db.add(run)
        runs.append(run)
    return runs


def clone_form(run: TrainingRun) -> dict[str, Any]:
    """The launch form filled with a run's settings (for "clone and edit")."""
    form: dict[str, Any] = {k: v for k, v in run.config.items() if k in runconfig.LIBRARY_FIELDS}
    for k in runconfig.APP_REFS:
        form[k] = run.config.get(k)
    form.update(
        dataset_id=run.dataset_id,
        seed=run.config.get("seed", runconfig.DEFAULTS["seed"]),
        seeds=None,
        tags=list(run.tags or []),
        name=f"{run.name} (clone)"[:200],
    )
    return form
