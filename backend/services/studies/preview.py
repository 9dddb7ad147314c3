"""The researcher's view of a study's stimuli before it opens: the runs a study may use, one
page of stimuli with their L-inf distance to the source measured from the files, a stimulus
file as stored, the one definition of a source image as stimuli are made from it, and the
stateless run through the participant's flow ("preview as participant")."""

from __future__ import annotations

import io
import logging
import random
from typing import Any

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.core.errors import Conflict, Invalid, NotFound
from backend.core.storage import Storage
from backend.models import Dataset, Image, Stimulus, Study, TrainingRun
from backend.services.studies.common import eps_key, run_image_size, stimuli_by_key
from backend.services.studies.participation import plan_trials, public_info

_logger = logging.getLogger(__name__)


def source_runs(db: Session) -> list[dict[str, Any]]:
    rows = db.execute(
        select(TrainingRun, Dataset.name)
        .join(Dataset, Dataset.id == TrainingRun.dataset_id)
        .where(TrainingRun.state == "succeeded", TrainingRun.checkpoint_key.is_not(None))
        .order_by(TrainingRun.id.desc())
    ).all()
    return [
        {
            "id": r.id,
            "name": r.name or f"run {r.id}",
            "method": r.method,
            "dataset_id": r.dataset_id,
            "dataset_name": name,
            "image_size": run_image_size(r),
            "finished_at": r.finished_at,
        }
        for r, name in rows
    ]


def _decode_png(data: bytes) -> tuple[np.ndarray, str]:
    """Pixels (H x W or H x W x 3, int16) and PIL mode of a stimulus PNG."""
    with PILImage.open(io.BytesIO(data)) as im:
        mode = "L" if im.mode == "L" else "RGB"
        return np.asarray(im.convert(mode), dtype=np.int16), mode


def source_array(data: bytes, mode: str, size: tuple[int, int]) -> np.ndarray:
    """A source image as stimuli are made from it: converted to `mode` ("L" or "RGB") and
    resized (bilinear) to `size` (width, height); H x W or H x W x 3 uint8. The one
    definition shared by stimulus generation (studies.stimuli.source_pixels, called by
    worker.study_tasks) and the preview below."""
    with PILImage.open(io.BytesIO(data)) as opened:
        im = opened.convert(mode)
        if im.size != size:
            im = im.resize(size, PILImage.Resampling.BILINEAR)
        return np.asarray(im, dtype=np.uint8)


def preview_stimuli(
    db: Session,
    storage: Storage,
    study: Study,
    *,
    run_id: int | None = None,
    eps_255: float | None = None,
    purpose: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> dict[str, Any]:
    """One page of the study's stimuli with the L-inf distance to their source, measured from
    the files (in grey levels), for the researcher to check budgets before opening a study.

    Ordered by run (the runless 2AFC references last), source image, epsilon, purpose."""
    if run_id is not None and run_id not in study.config["run_ids"]:
        raise Invalid(f"Run {run_id} is not part of this study.")
    where = [Stimulus.study_id == study.id]
    if run_id is not None:
        where.append(Stimulus.run_id == run_id)
    if eps_255 is not None:
        where.append(func.abs(Stimulus.epsilon * 255 - float(eps_255)) < 1e-4)
    if purpose is not None:
        where.append(Stimulus.purpose == purpose)
    count = db.scalar(select(func.count()).select_from(Stimulus).where(*where)) or 0
    rows = db.execute(
        select(Stimulus, TrainingRun.name, Image.storage_key)
        .outerjoin(TrainingRun, TrainingRun.id == Stimulus.run_id)
        .join(Image, Image.id == Stimulus.source_image_id)
        .where(*where)
        .order_by(
            Stimulus.run_id.asc().nulls_last(),
            Stimulus.source_image_id,
            Stimulus.epsilon,
            Stimulus.purpose,
            Stimulus.id,
        )
        .limit(limit)
        .offset(offset)
    ).all()
    by_purpose = dict(
        db.execute(
            select(Stimulus.purpose, func.count())
            .where(Stimulus.study_id == study.id)
            .group_by(Stimulus.purpose)
        ).all()
    )
    # one read and decode per source image and stimulus size on the page
    sources: dict[tuple[int, str, int, int], np.ndarray | None] = {}
    data = []
    for s, run_name, source_key in rows:
        linf: int | None = None
        width = height = None
        try:
            pixels, mode = _decode_png(storage.get_bytes(s.storage_key))
        except (OSError, ValueError):  # missing or unreadable file: shown as unknown
            _logger.warning("stimulus %s: file %s unreadable", s.id, s.storage_key)
        else:
            height, width = pixels.shape[:2]
            key = (s.source_image_id, mode, width, height)
            if key not in sources:
                try:
                    raw = storage.get_bytes(source_key)
                    sources[key] = source_array(raw, mode, (width, height))
                except (OSError, ValueError):
                    sources[key] = None
            src = sources[key]
            if src is not None:
                diff = np.abs(pixels - src.astype(np.int16))
                linf = int(diff.max()) if diff.size else 0
        data.append(
            {
                "id": s.id,
                "run_id": s.run_id,
                "run_name": (run_name or f"run {s.run_id}") if s.run_id is not None else None,
                "source_image_id": s.source_image_id,
                "epsilon": s.epsilon,
                "epsilon_255": round(s.epsilon * 255, 6),
                "attack": s.attack,
                "seed": s.seed,
                "purpose": s.purpose,
                "linf_255": linf,
                "width": width,
                "height": height,
                "image_url": f"/api/studies/{study.id}/stimuli/{s.id}/image",
            }
        )
    return {
        "data": data,
        "count": count,
        "limit": limit,
        "offset": offset,
        "by_purpose": by_purpose,
    }


def stimulus_file(db: Session, storage: Storage, study: Study, stimulus_id: int) -> bytes:
    """The stored PNG of one stimulus of this study, exactly as written."""
    s = db.scalar(select(Stimulus).where(Stimulus.id == stimulus_id, Stimulus.study_id == study.id))
    if s is None:
        raise NotFound(f"Stimulus {stimulus_id} is not part of study {study.id}.")
    try:
        return storage.get_bytes(s.storage_key)
    except (OSError, ValueError) as exc:
        raise NotFound(f"The file of stimulus {stimulus_id} is missing from storage.") from exc


# ---- the researcher's run through the participant's flow ------------------------------------

PREVIEW_STATES = ("ready", "open", "closed")


def participant_preview(db: Session, study: Study, condition_index: int = 0) -> dict[str, Any]:
    """Everything the participant's page needs to run the whole flow as participant number
    `condition_index` would see it (the same trial plan, participation.plan_trials), with
    nothing stored: no session, no slot, no answer. Stateless, so a preview can never be
    counted, analysed or exported, and works before the study opens. The researcher's page
    keeps the answers in memory and judges the practice answers itself, which is why each
    trial carries its correct answer here (this route is for researchers only)."""
    if study.state not in PREVIEW_STATES:
        raise Conflict("The stimuli of this study are not made yet; make them to preview it.")
    stim = stimuli_by_key(db, study.id)
    cfg = study.config
    plan = plan_trials(study, stim, condition_index, random.Random(condition_index))

    def url(s: Stimulus) -> str:
        return f"/api/studies/{study.id}/stimuli/{s.id}/image"

    trials = []
    numbers = {"practice": 0, "main": 0}
    for index, t in enumerate(plan):
        phase = "practice" if t.phase == "practice" else "main"
        numbers[phase] += 1
        images = [url(t.left)] + ([url(t.right)] if t.right is not None else [])
        trials.append(
            {
                "id": f"preview-{index}",
                "phase": phase,
                "number": numbers[phase],
                "images": images,
                "correct_answer": t.correct_answer,
            }
        )
    img = cfg["images"]["example"]
    example = None  # a label study has no example pair
    if img is not None:
        changed = stim[("example", cfg["run_ids"][0], img, eps_key(cfg["catch_epsilon_255"]))]
        original = stim[("reference", None, img, 0.0)]
        example = {"original": url(original), "changed": url(changed)}
    return {
        "study_id": study.id,
        "condition_index": condition_index,
        "info": public_info(study),
        "example": example,
        "trials": trials,
        "practice_total": numbers["practice"],
        "main_total": numbers["main"],
        "completion_url": cfg.get("completion_url"),
    }
