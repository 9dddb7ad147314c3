"""Designing a perception study: validating the request against the database, fixing the
design, the plan of every stimulus it needs, and the counts the study list shows (starting
generation, opening and closing: backend/services/study_lifecycle.py).

Design, fixed when the study is created and stored in study.config:
- images are split (seeded) into one example image, practice images, catch images and the
  main pool; every participant sees each image at most once;
- the main cells are run x epsilon (2AFC), or run x epsilon > 0 plus as many clean trials
  (yes/no, "half clean"), interleaved into a sequence `cells` of length N;
- participant number c (condition_index, in order of consent) shows main image j in cell
  cells[(j + c) mod N]: a cyclic Latin square, so every participant gets every cell equally
  often and, over N participants, every image appears in every cell.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.core.errors import Invalid
from backend.models import Image, ParticipantSession, Stimulus, Study, StudyRun, TrainingRun, User
from backend.schemas.studies import StudyCreate
from backend.services.studies.common import StimulusKey, eps_key, run_image_size


def _cell_sequence(
    design: str, run_ids: list[int], eps_255: list[float], t: int
) -> list[list[float]]:
    """The interleaved list of [run_id, eps_255] main cells, each with its multiplicity."""
    seq: list[list[float]] = []
    positive = [e for e in eps_255 if e > 0]
    for _ in range(t):
        for run_id in run_ids:
            if design == "2afc":
                for e in eps_255:
                    seq.append([run_id, e])
            else:
                for e in positive:
                    seq.append([run_id, e])
                    seq.append([run_id, 0.0])  # one clean trial per perturbed one, same run
    return seq


def create_study(db: Session, body: StudyCreate, user: User) -> Study:
    """Validate against the database, fix the design, store a draft study."""
    runs = [db.get(TrainingRun, rid) for rid in body.run_ids]
    for rid, run in zip(body.run_ids, runs, strict=True):
        if run is None:
            raise Invalid(f"Run {rid} does not exist.", field="run_ids")
        if run.state != "succeeded" or not run.checkpoint_key:
            raise Invalid(f"Run {rid} has not finished successfully.", field="run_ids")
    good_runs = [r for r in runs if r is not None]
    dataset_ids = {r.dataset_id for r in good_runs}
    if len(dataset_ids) != 1:
        raise Invalid("All runs must be trained on the same dataset.", field="run_ids")
    dataset_id = dataset_ids.pop()
    if len({run_image_size(r) for r in good_runs}) != 1:
        raise Invalid("All runs must use the same image size.", field="run_ids")
    if body.design == "label":  # one image named per trial (issue 26)
        from backend.services.studies.labels import create_label_study

        return create_label_study(db, body, user, dataset_id)

    grid = list(body.epsilons_255)
    if body.placement == "quest" and body.quest is not None:
        # QUEST+ (adaptive.py): each participant's main trials are max_trials per run, each on
        # its own image, at a ladder level chosen after the run's previous answer
        from backend.services.studies.adaptive import ladder

        grid = ladder(body.quest.model_dump())
        cells: list[list[float]] = []
        n_main = len(body.run_ids) * body.quest.max_trials
    else:
        cells = _cell_sequence(body.design, body.run_ids, grid, body.trials_per_condition)
        n_main = len(cells)
    needed = n_main + body.catch_trials + body.practice_trials + 1
    rng = random.Random(body.seed)
    if body.image_ids is not None:
        rows = db.execute(
            select(Image.id, Image.dataset_id).where(Image.id.in_(body.image_ids))
        ).all()
        found = {r.id: r.dataset_id for r in rows}
        missing = [i for i in body.image_ids if i not in found]
        if missing:
            raise Invalid(f"Image {missing[0]} does not exist.", field="image_ids")
        foreign = [i for i in body.image_ids if found[i] != dataset_id]
        if foreign:
            raise Invalid(f"Image {foreign[0]} is not in the runs' dataset.", field="image_ids")
        pool = list(body.image_ids)
    else:
        test_ids = list(
            db.scalars(
                select(Image.id)
                .where(Image.dataset_id == dataset_id, Image.split == "test")
                .order_by(Image.id)
            )
        )
        wanted = body.num_random_images or 0
        if wanted > len(test_ids):
            raise Invalid(
                f"The dataset has only {len(test_ids)} test images; {wanted} were asked for.",
                field="num_random_images",
            )
        pool = rng.sample(test_ids, wanted)
    if len(pool) < needed:
        raise Invalid(
            f"This design needs at least {needed} images ({n_main} main, {body.catch_trials} "
            f"catch, {body.practice_trials} practice and 1 example); {len(pool)} were given.",
            field="image_ids" if body.image_ids is not None else "num_random_images",
        )
    rng.shuffle(pool)
    p, c = body.practice_trials, body.catch_trials
    images = {
        "example": pool[0],
        "practice": pool[1 : 1 + p],
        "catch": pool[1 + p : 1 + p + c],
        "main": pool[1 + p + c :],
    }
    config: dict[str, Any] = body.model_dump(mode="json", exclude={"name", "design", "image_ids"})
    config.update(
        dataset_id=dataset_id,
        images=images,
        cells=cells,
        epsilons_255=grid,
        epsilons=[e / 255 for e in grid],
        image_size=None,
        stimulus_bytes=None,
    )
    study = Study(
        name=body.name,
        design=body.design,
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


@dataclass(frozen=True)
class StimulusSpec:
    purpose: str  # main, reference, catch, practice, example
    run_id: int | None  # None: the clean reference image shown beside a perturbed one (2AFC)
    image_id: int
    eps_255: float

    @property
    def key(self) -> StimulusKey:
        return (self.purpose, self.run_id, self.image_id, eps_key(self.eps_255))


def stimulus_plan(study: Study) -> list[StimulusSpec]:
    """Every stimulus a study needs, in generation order (grouped by run)."""
    cfg = study.config
    runs: list[int] = cfg["run_ids"]
    imgs = cfg["images"]
    grid = [float(e) for e in cfg["epsilons_255"]]
    if study.design == "yesno":
        grid = sorted({0.0, *grid})
    catch_eps = float(cfg["catch_epsilon_255"])
    specs: list[StimulusSpec] = []
    for i, rid in enumerate(runs):
        specs += [StimulusSpec("main", rid, img, e) for img in imgs["main"] for e in grid]
        specs += [StimulusSpec("catch", rid, img, catch_eps) for img in imgs["catch"]]
        practice_levels = (catch_eps,) if study.design == "2afc" else (0.0, catch_eps)
        specs += [
            StimulusSpec("practice", rid, img, e)
            for img in imgs["practice"]
            for e in practice_levels
        ]
        if i == 0:
            specs.append(StimulusSpec("example", rid, imgs["example"], catch_eps))
    if study.design == "2afc":
        for img in [*imgs["main"], *imgs["catch"], *imgs["practice"], imgs["example"]]:
            specs.append(StimulusSpec("reference", None, img, 0.0))
    else:
        specs.append(StimulusSpec("reference", None, imgs["example"], 0.0))
    return specs


def study_counts(db: Session, ids: list[int]) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {
        i: {"run_ids": [], "num_sessions": 0, "num_completed": 0, "num_stimuli": 0} for i in ids
    }
    if not ids:
        return out
    for sid, rid in db.execute(
        select(StudyRun.study_id, StudyRun.run_id).where(StudyRun.study_id.in_(ids))
    ):
        out[sid]["run_ids"].append(rid)
    for sid, n, done in db.execute(
        select(
            ParticipantSession.study_id,
            func.count(),
            func.count(ParticipantSession.completed_at),
        )
        # sessions that consented (took a slot); opening the link alone makes no participant
        .where(ParticipantSession.study_id.in_(ids), ParticipantSession.condition_index >= 0)
        .group_by(ParticipantSession.study_id)
    ):
        out[sid]["num_sessions"], out[sid]["num_completed"] = n, done
    for sid, n in db.execute(
        select(Stimulus.study_id, func.count())
        .where(Stimulus.study_id.in_(ids))
        .group_by(Stimulus.study_id)
    ):
        out[sid]["num_stimuli"] = n
    return out
