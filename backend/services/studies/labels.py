"""Label studies (issue 26): participants name the class of one image at a time, clean or an
AutoAttack example that fooled a run's model, or answer "can't tell"; from their answers, the
run's human-validated robust accuracy.

Design, fixed when the study is created (`create_label_study`, stored in study.config):
- `images_per_class` test images of every class form the main pool (seeded); each is shown
  clean, and attacked by every run's final model at every epsilon of the grid;
- the worker (worker/label_stimuli.py) runs the library's AutoAttack (standard, L-inf)
  on the pool, quantises every adversarial image to 8 bits within the budget and keeps it only
  if the model still gets it wrong; the rest are dropped and counted. Per run and epsilon it
  records each pool image's outcome (`record_model_outcomes`): "wrong" (the model's clean
  answer is wrong), "robust" (the attack did not change it), "fooled" (a kept adversarial
  stimulus) or "dropped" (fooled before quantisation, not after);
- participant number c sees main image j (in pool order) in condition
  conditions_j[(c + j) mod len(conditions_j)], where conditions_j is the clean image
  followed by its kept adversarial stimuli (run x epsilon): every image once per participant,
  its conditions rotated over participants (a cyclic Latin square per image);
- practice (with feedback) and catch trials are clean images outside the pool; catch images
  the first run's model gets wrong are dropped by the worker.

Results (`label_results`): per run and epsilon, human accuracy on the clean and adversarial
images, the share of the model's adversarial errors on which people still name the true
class, and the human-validated robust accuracy (docs/studies.md, "Label studies"), each with
a percentile interval from resampling participants.
"""

from __future__ import annotations

import random
import secrets
from collections import defaultdict
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.core.errors import Invalid
from backend.models import DatasetClass, Image, Stimulus, Study, StudyRun, User
from backend.schemas.studies import StudyCreate
from backend.services.studies.common import StimulusKey, eps_key, public_id

CANT_TELL = "none"
ATTACK = {"name": "autoattack", "version": "standard", "norm": "Linf"}
OUTCOMES = ("wrong", "robust", "fooled", "dropped")
BOOTSTRAP = 2000
INTERVAL = 0.95


def class_names(db: Session, dataset_id: int) -> list[str]:
    rows = db.execute(
        select(DatasetClass.index, DatasetClass.name)
        .where(DatasetClass.dataset_id == dataset_id)
        .order_by(DatasetClass.index)
    ).all()
    return [name for _, name in rows]


def create_label_study(db: Session, body: StudyCreate, user: User, dataset_id: int) -> Study:
    """A draft label study of runs already checked to share a dataset and image size."""
    per_class = body.images_per_class
    if per_class is None:
        raise Invalid("A label study needs images_per_class.", field="images_per_class")
    if body.image_ids is not None:
        raise Invalid(
            "A label study draws its images per class; give images_per_class, not image_ids.",
            field="image_ids",
        )
    grid = sorted({float(e) for e in body.epsilons_255})
    if any(e <= 0 for e in grid):
        raise Invalid("Every epsilon of a label study must be above 0.", field="epsilons_255")
    classes = class_names(db, dataset_id)
    rng = random.Random(body.seed)
    by_class: dict[int, list[int]] = defaultdict(list)
    class_of: dict[int, int] = {}
    for image_id, index in db.execute(
        select(Image.id, DatasetClass.index)
        .join(DatasetClass, DatasetClass.id == Image.class_id)
        .where(Image.dataset_id == dataset_id, Image.split == "test")
        .order_by(Image.id)
    ):
        by_class[int(index)].append(int(image_id))
        class_of[int(image_id)] = int(index)
    extra = body.practice_trials + body.catch_trials
    main: list[int] = []
    rest: list[int] = []
    for index in range(len(classes)):
        ids = list(by_class.get(index, []))
        if len(ids) < per_class:
            raise Invalid(
                f"Class {classes[index]!r} has {len(ids)} test images; {per_class} were asked for.",
                field="images_per_class",
            )
        rng.shuffle(ids)
        main += ids[:per_class]
        rest += ids[per_class:]
    if len(rest) < extra:
        raise Invalid(
            f"Practice and catch trials need {extra} more test images outside the "
            f"{len(main)} of the pool; the dataset has {len(rest)}.",
            field="images_per_class",
        )
    rng.shuffle(main)
    rng.shuffle(rest)
    p = body.practice_trials
    images: dict[str, Any] = {
        "main": main,
        "practice": rest[:p],
        "catch": rest[p:extra],
        "example": None,
    }
    config: dict[str, Any] = body.model_dump(mode="json", exclude={"name", "design", "image_ids"})
    config.update(
        dataset_id=dataset_id,
        images=images,
        classes=classes,
        true_classes={str(i): class_of[i] for i in [*main, *images["practice"], *images["catch"]]},
        epsilons_255=grid,
        epsilons=[e / 255 for e in grid],
        attack=dict(ATTACK),
        cells=[],
        catch_epsilon_255=0.0,
        image_size=None,
        stimulus_bytes=None,
    )
    study = Study(
        name=body.name,
        design="label",
        config=config,
        state="draft",
        link_token=secrets.token_urlsafe(24),
        created_by_id=user.id,
    )
    db.add(study)
    db.flush()
    for rid in body.run_ids:
        db.add(StudyRun(study_id=study.id, run_id=rid))
    db.commit()
    return study


# ---- the worker's data side ----------------------------------------------------------------


def has_outcomes(study: Study) -> bool:
    table = study.config.get("label_model")
    return isinstance(table, dict) and {int(r["run_id"]) for r in table.get("runs", [])} >= {
        int(r) for r in study.config["run_ids"]
    }


def record_model_outcomes(
    db: Session, study: Study, run_id: int, points: list[dict[str, Any]]
) -> None:
    """Store one run's outcomes: per epsilon, {"epsilon_255", "outcomes": {image id: one of
    OUTCOMES}} with the counts of each; committed."""
    cfg = dict(study.config)
    table = dict(cfg.get("label_model") or {"attack": dict(ATTACK), "runs": []})
    runs = [r for r in table["runs"] if int(r["run_id"]) != run_id]
    for p in points:
        counts = dict.fromkeys(OUTCOMES, 0)
        for o in p["outcomes"].values():
            counts[o] += 1
        p["counts"] = counts
        p["n"] = len(p["outcomes"])
    runs.append({"run_id": run_id, "points": points})
    table["runs"] = runs
    cfg["label_model"] = table
    study.config = cfg
    db.commit()


def record_label_progress(db: Session, study: Study, fraction: float) -> float:
    """Commit the stimuli stored so far with the study's progress (0..1); returns it."""
    study.progress = fraction
    db.commit()
    return fraction


def record_dropped_catch(db: Session, study: Study, dropped: list[int]) -> None:
    cfg = dict(study.config)
    images = dict(cfg["images"])
    images["catch"] = [i for i in images["catch"] if i not in set(dropped)]
    cfg["images"] = images
    cfg["catch_dropped"] = len(dropped)
    study.config = cfg
    db.commit()


# ---- participation ------------------------------------------------------------------------


def valid_answers(study: Study) -> set[str]:
    return {CANT_TELL, *(str(i) for i in range(len(study.config.get("classes") or [])))}


def plan_label_trials(
    study: Study, stim: dict[StimulusKey, Stimulus], condition_index: int, rng: random.Random
) -> list[Any]:
    """Participant number `condition_index`'s trials: practice first (clean), then main and
    catch trials shuffled by `rng` (participation.PlannedTrial each; the right answer is the
    image's class index)."""
    from backend.services.studies.participation import PlannedTrial

    cfg = study.config
    answer = {int(k): str(v) for k, v in cfg.get("true_classes", {}).items()}
    runs = [int(r) for r in cfg["run_ids"]]
    grid = [float(e) for e in cfg["epsilons_255"]]

    def trial(phase: str, s: Stimulus) -> Any:
        return PlannedTrial(phase, s, None, answer[s.source_image_id], s)

    practice = [
        trial("practice", stim[("practice", None, i, 0.0)]) for i in cfg["images"]["practice"]
    ]
    main = []
    for j, img in enumerate(cfg["images"]["main"]):
        options = [stim[("main", None, img, 0.0)]]
        for rid in runs:
            for e in grid:
                s = stim.get(("main", rid, img, eps_key(e)))
                if s is not None:
                    options.append(s)
        main.append(trial("main", options[(condition_index + j) % len(options)]))
    main += [trial("catch", stim[("catch", None, i, 0.0)]) for i in cfg["images"]["catch"]]
    rng.shuffle(main)
    return practice + main


# ---- results ------------------------------------------------------------------------------


def human_validated_robust_accuracy(
    counts: dict[str, int], people_right: list[float]
) -> float | None:
    """(robust + fooled x (1 - h)) / n, where h is the mean over the fooled images people
    judged of the share of answers naming the true class (the fooled images nobody judged
    are taken at that mean); clean errors and dropped images stay errors. None without n or,
    when some images were fooled, without a judged one."""
    n = sum(counts.get(o, 0) for o in OUTCOMES)
    if n == 0:
        return None
    fooled = counts.get("fooled", 0)
    if fooled and not people_right:
        return None
    h = float(np.mean(people_right)) if people_right else 0.0
    return (counts.get("robust", 0) + fooled * (1.0 - h)) / n


def _interval(values: list[float]) -> list[float] | None:
    if not values:
        return None
    lo, hi = np.quantile(values, [(1 - INTERVAL) / 2, (1 + INTERVAL) / 2])
    return [float(lo), float(hi)]


def _rows(db: Session, study: Study) -> tuple[list[dict[str, Any]], dict[int, str]]:
    """The main trials of the included, completed sessions with their source image; the
    excluded sessions with their reasons."""
    from backend.services.studies.analysis import _trial_rows, exclusions

    rows = _trial_rows(db, study)
    excluded = exclusions(study, rows)
    image_of = dict(
        db.execute(
            select(Stimulus.public_id, Stimulus.source_image_id).where(
                Stimulus.study_id == study.id
            )
        ).all()
    )
    out = []
    for r in rows:
        if r["session_id"] in excluded or not r["completed"] or r["phase"] != "main":
            continue
        if r["answer"] is None:
            continue
        out.append({**r, "image_id": image_of.get(r["left_stimulus"])})
    return out, excluded


def _estimates(rows: list[dict[str, Any]], study: Study) -> dict[str, Any]:
    """Every figure of the study from these trial rows (one bootstrap replicate, or all)."""
    clean = [r["correct"] for r in rows if r["run_id"] is None]
    per: dict[tuple[int, float], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["run_id"] is not None:
            per[(int(r["run_id"]), eps_key(r["epsilon_255"]))].append(r)
    out: dict[str, Any] = {"clean": float(np.mean(clean)) if clean else None, "cells": {}}
    table = {int(t["run_id"]): t for t in (study.config.get("label_model") or {}).get("runs", [])}
    for rid in [int(r) for r in study.config["run_ids"]]:
        for p in table.get(rid, {}).get("points", []):
            e = eps_key(p["epsilon_255"])
            trials = per.get((rid, e), [])
            by_image: dict[int, list[bool]] = defaultdict(list)
            for r in trials:
                by_image[int(r["image_id"])].append(bool(r["correct"]))
            right = [float(np.mean(v)) for v in by_image.values()]
            out["cells"][(rid, e)] = {
                "adversarial": float(np.mean([r["correct"] for r in trials])) if trials else None,
                "still_true": float(np.mean(right)) if right else None,
                "hvra": human_validated_robust_accuracy(p["counts"], right),
            }
    return out


def label_results(db: Session, study: Study, *, seed: int | None = None) -> dict[str, Any]:
    """The label study's analysis: per run and epsilon the model's outcomes, human accuracy on
    clean and adversarial images, the share of the model's adversarial errors on which people
    still name the true class, and the human-validated robust accuracy, each with a 95 %
    percentile interval from BOOTSTRAP resamples of the included participants."""
    from backend.models import TrainingRun

    rows, excluded = _rows(db, study)
    point = _estimates(rows, study)
    by_session: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_session[r["session_id"]].append(r)
    sessions = sorted(by_session)
    rng = np.random.default_rng(int(study.config.get("seed", 0)) if seed is None else seed)
    reps: list[dict[str, Any]] = []
    if sessions:
        for _ in range(BOOTSTRAP):
            pick = rng.integers(0, len(sessions), len(sessions))
            reps.append(_estimates([r for k in pick for r in by_session[sessions[k]]], study))

    def interval(get: Any) -> list[float] | None:
        return _interval([v for v in (get(x) for x in reps) if v is not None])

    table = {int(t["run_id"]): t for t in (study.config.get("label_model") or {}).get("runs", [])}
    runs_out = []
    for rid in [int(r) for r in study.config["run_ids"]]:
        run = db.get(TrainingRun, rid)
        points = []
        for p in table.get(rid, {}).get("points", []):
            e = eps_key(p["epsilon_255"])
            cell = point["cells"].get((rid, e), {})
            n = p["n"]
            c = p["counts"]
            trials = sum(1 for r in rows if r["run_id"] == rid and eps_key(r["epsilon_255"]) == e)
            points.append(
                {
                    "epsilon_255": e,
                    "n_images": n,
                    "model": c,
                    "model_clean_accuracy": (n - c["wrong"]) / n if n else None,
                    "model_robust_accuracy": c["robust"] / n if n else None,
                    "adversarial_trials": trials,
                    "human_accuracy_adversarial": cell.get("adversarial"),
                    "human_accuracy_adversarial_ci": interval(
                        lambda x, k=(rid, e): x["cells"].get(k, {}).get("adversarial")
                    ),
                    "model_errors_people_right": cell.get("still_true"),
                    "model_errors_people_right_ci": interval(
                        lambda x, k=(rid, e): x["cells"].get(k, {}).get("still_true")
                    ),
                    "human_validated_robust_accuracy": cell.get("hvra"),
                    "human_validated_robust_accuracy_ci": interval(
                        lambda x, k=(rid, e): x["cells"].get(k, {}).get("hvra")
                    ),
                }
            )
        runs_out.append(
            {
                "run_id": rid,
                "run_name": run.name if run else "",
                "method": run.method if run else "",
                "points": points,
            }
        )
    return {
        "study_id": study.id,
        "design": "label",
        "attack": dict(ATTACK),
        "interval": f"{int(INTERVAL * 100)} % percentile, {BOOTSTRAP} participant resamples",
        "participants": {"included": len(sessions)},
        "excluded": [{"session_id": k, "reason": v} for k, v in sorted(excluded.items())],
        "human_accuracy_clean": point["clean"],
        "human_accuracy_clean_ci": interval(lambda x: x["clean"]),
        "clean_trials": sum(1 for r in rows if r["run_id"] is None),
        "catch_dropped": study.config.get("catch_dropped", 0),
        "runs": runs_out,
    }


def run_label_results(db: Session, run_id: int) -> list[dict[str, Any]]:
    """The human-validated robust accuracy of one run from every label study that covers it
    and has model outcomes: per study and epsilon, with its interval and AutoAttack's robust
    accuracy on the same images beside it."""
    studies = db.scalars(
        select(Study)
        .join(StudyRun, StudyRun.study_id == Study.id)
        .where(StudyRun.run_id == run_id, Study.design == "label")
        .order_by(Study.id)
    )
    out = []
    for study in studies:
        if not has_outcomes(study):
            continue
        res = label_results(db, study)
        for run in res["runs"]:
            if run["run_id"] != run_id:
                continue
            for p in run["points"]:
                out.append(
                    {
                        "study_id": study.id,
                        "study_name": study.name,
                        "epsilon_255": p["epsilon_255"],
                        "n_images": p["n_images"],
                        "participants": res["participants"]["included"],
                        "autoattack_robust_accuracy": p["model_robust_accuracy"],
                        "value": p["human_validated_robust_accuracy"],
                        "ci": p["human_validated_robust_accuracy_ci"],
                    }
                )
    return out


def store_label_stimulus(
    db: Session,
    storage: Any,
    study: Study,
    key: StimulusKey,
    png: bytes,
    *,
    attack: str,
    seed: int,
) -> Stimulus:
    """Write one label stimulus's PNG (stimuli.encode_stimulus) under a random name and add
    its row (the caller commits)."""
    import hashlib

    purpose, run_id, image_id, eps_255 = key
    name = f"studies/{study.id}/stimuli/{secrets.token_hex(16)}.png"
    storage.put_bytes(name, png)
    row = Stimulus(
        study_id=study.id,
        public_id=public_id(18),
        run_id=run_id,
        source_image_id=image_id,
        epsilon=eps_255 / 255,
        attack=attack,
        seed=seed,
        purpose=purpose,
        storage_key=name,
        sha256=hashlib.sha256(png).hexdigest(),
    )
    db.add(row)
    return row
