"""Perception studies: design (which stimuli, which cells), per-participant trial assignment,
the participant's answers, exclusions and the analysis.

Design, fixed when the study is created and stored in study.config:
- images are split (seeded) into one example image, practice images, catch images and the
  main pool; every participant sees each image at most once;
- the main cells are run x epsilon (2AFC), or run x epsilon > 0 plus as many clean trials
  (yes/no, "half clean"), interleaved into a sequence `cells` of length N;
- participant number c (condition_index) shows main image j in cell cells[(j + c) mod N]: a
  cyclic Latin square, so every participant gets every cell equally often and, over N
  participants, every image appears in every cell.
"""

from __future__ import annotations

import csv
import io
import logging
import random
import secrets
import struct
import zlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.core.errors import Conflict, Invalid, NotFound, Unavailable
from backend.core.queue import STIMULI_TASK, enqueue
from backend.core.storage import LocalStorage
from backend.models import (
    Dataset,
    Image,
    ParticipantSession,
    Response,
    Stimulus,
    Study,
    StudyRun,
    TrainingRun,
    Trial,
    User,
)
from backend.schemas.studies import StudyCreate
from backend.services import psychometrics

_logger = logging.getLogger(__name__)

# the participant page needs this much room around the image(s), in CSS pixels
WINDOW_MARGIN_W = 120
WINDOW_MARGIN_H = 260
MIN_WINDOW_W = 800
MIN_WINDOW_H = 560


def utcnow() -> datetime:
    return datetime.now(UTC)


def eps_key(eps_255: float) -> float:
    """Epsilons are compared in grey levels rounded to 1e-6 (floats from JSON)."""
    return round(float(eps_255), 6)


# ---- design ---------------------------------------------------------------------------------


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


def _run_image_size(run: TrainingRun) -> int | None:
    size = (run.config or {}).get("image_size")
    return int(size) if isinstance(size, int | float) else None


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
    if len({_run_image_size(r) for r in good_runs}) != 1:
        raise Invalid("All runs must use the same image size.", field="run_ids")

    cells = _cell_sequence(body.design, body.run_ids, body.epsilons_255, body.trials_per_condition)
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
        epsilons=[e / 255 for e in body.epsilons_255],
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
    def key(self) -> tuple[str, int | None, int, float]:
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


def stimuli_by_key(
    db: Session, study_id: int
) -> dict[tuple[str, int | None, int, float], Stimulus]:
    rows = db.scalars(select(Stimulus).where(Stimulus.study_id == study_id))
    return {(s.purpose, s.run_id, s.source_image_id, eps_key(s.epsilon * 255)): s for s in rows}


def start_generation(db: Session, study: Study) -> Study:
    if study.state not in ("draft", "failed"):
        raise Conflict("Stimuli can only be generated for a draft or failed study.")
    study.state = "generating"
    study.error = None
    study.progress = 0.0
    db.commit()
    try:
        enqueue(STIMULI_TASK, study.id)
    except Exception as exc:  # broker down: leave the study as it was, say why
        _logger.exception("could not enqueue stimulus generation for study %s", study.id)
        study.state = "failed"
        study.error = f"The task queue could not be reached: {exc}"
        db.commit()
        raise Unavailable("The task queue could not be reached; try again later.") from exc
    return study


def set_open(db: Session, study: Study, open_: bool) -> Study:
    if open_:
        if study.state not in ("ready", "closed"):
            raise Conflict("Only a study whose stimuli are ready can be opened.")
        study.state = "open"
    else:
        if study.state != "open":
            raise Conflict("Only an open study can be closed.")
        study.state = "closed"
    db.commit()
    return study


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
        .where(ParticipantSession.study_id.in_(ids))
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


# ---- serving stimuli so that their size says nothing ---------------------------------------

PAD_CHUNK = b"spAd"  # ancillary, private, safe to copy: decoders skip it


def pad_png(data: bytes, size: int) -> bytes:
    """Insert a private ancillary chunk before IEND so the file is exactly `size` bytes.

    A perturbed PNG compresses worse than its clean source, so raw file sizes would tell which
    image was changed; every stimulus of a study is served at one size (the largest + 12)."""
    if not data.endswith(b"IEND\xaeB`\x82"):
        raise ValueError("not a PNG ending in IEND")
    pad = size - len(data) - 12
    if pad < 0:
        raise ValueError("the PNG is larger than the padded size")
    body = PAD_CHUNK + bytes(pad)
    chunk = struct.pack(">I", pad) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
    return data[:-12] + chunk + data[-12:]


def padded_size(max_len: int) -> int:
    return max_len + 12


# ---- participants -----------------------------------------------------------------------------


def public_info(db: Session, study: Study) -> dict[str, Any]:
    cfg = study.config
    size = cfg.get("image_size") or [0, 0]
    w, h = int(size[0]), int(size[1])
    shown = 2 if study.design == "2afc" else 1
    return {
        "name": study.name,
        "design": study.design,
        "accepting": study.state == "open",
        "texts": cfg["texts"],
        "image_width": w,
        "image_height": h,
        "min_window_width": max(MIN_WINDOW_W, shown * w + WINDOW_MARGIN_W),
        "min_window_height": max(MIN_WINDOW_H, h + WINDOW_MARGIN_H),
    }


def _new_trials(db: Session, study: Study, session: ParticipantSession) -> None:
    """Create the session's trials: practice first, then main and catch trials shuffled."""
    cfg = study.config
    stim = stimuli_by_key(db, study.id)
    runs: list[int] = cfg["run_ids"]
    imgs = cfg["images"]
    catch_eps = float(cfg["catch_epsilon_255"])
    c = session.condition_index
    # the order and sides come from the system's randomness, not from anything guessable
    rng = random.SystemRandom()
    is_2afc = study.design == "2afc"

    def pair(perturbed: Stimulus, image_id: int) -> tuple[int, int | None, str]:
        """(left, right, correct answer) of a trial showing `perturbed`."""
        if not is_2afc:
            return perturbed.id, None, "yes" if perturbed.epsilon > 0 else "no"
        ref = stim[("reference", None, image_id, 0.0)]
        if rng.random() < 0.5:
            return perturbed.id, ref.id, "left"
        return ref.id, perturbed.id, "right"

    planned: list[tuple[str, Stimulus, int]] = []  # (phase, stimulus shown as changed, image)
    practice_signal = [i % 2 == 0 for i in range(len(imgs["practice"]))]
    rng.shuffle(practice_signal)
    for i, img in enumerate(imgs["practice"]):
        rid = runs[(i + c) % len(runs)]
        e = catch_eps if (is_2afc or practice_signal[i]) else 0.0
        planned.append(("practice", stim[("practice", rid, img, eps_key(e))], img))
    main: list[tuple[str, Stimulus, int]] = []
    cells = cfg["cells"]
    n = len(cells)
    pool = imgs["main"]
    shift = ((c // n) * n) % len(pool)
    for j in range(n):
        rid, e = cells[(j + c) % n]
        img = pool[(shift + j) % len(pool)]
        main.append(("main", stim[("main", int(rid), img, eps_key(e))], img))
    for k, img in enumerate(imgs["catch"]):
        rid = runs[(k + c) % len(runs)]
        main.append(("catch", stim[("catch", rid, img, eps_key(catch_eps))], img))
    rng.shuffle(main)
    for index, (phase, s, img) in enumerate(planned + main):
        left, right, correct = pair(s, img)
        db.add(
            Trial(
                session_id=session.id,
                index=index,
                public_id=secrets.token_urlsafe(16),
                phase=phase,
                left_stimulus_id=left,
                right_stimulus_id=right,
                correct_answer=correct,
                run_id=s.run_id,
                epsilon=s.epsilon,
            )
        )


def start_session(
    db: Session,
    study: Study,
    pid: str | None,
    prolific_study: str | None,
    prolific_session: str | None,
) -> tuple[ParticipantSession, bool]:
    """A new session for this link, or the existing one of the same PROLIFIC_PID.
    Returns (session, created)."""
    pid = (pid or "").strip() or None
    if pid is not None:
        existing = db.scalar(
            select(ParticipantSession).where(
                ParticipantSession.study_id == study.id, ParticipantSession.participant_key == pid
            )
        )
        if existing is not None:
            return existing, False
    if study.state != "open":
        raise Conflict("This study is not accepting participants at the moment.")
    # serialise condition_index assignment per study
    db.execute(select(Study.id).where(Study.id == study.id).with_for_update())
    if pid is not None:  # someone with this pid may have started while we waited for the lock
        existing = db.scalar(
            select(ParticipantSession).where(
                ParticipantSession.study_id == study.id, ParticipantSession.participant_key == pid
            )
        )
        if existing is not None:
            db.rollback()
            return existing, False
    count = (
        db.scalar(
            select(func.count())
            .select_from(ParticipantSession)
            .where(ParticipantSession.study_id == study.id)
        )
        or 0
    )
    session = ParticipantSession(
        study_id=study.id,
        token=secrets.token_urlsafe(24),
        participant_key=pid or f"anon-{secrets.token_hex(8)}",
        prolific_pid=pid,
        prolific_study_id=prolific_study,
        prolific_session_id=prolific_session,
        condition_index=count,
        stage="consent",
    )
    db.add(session)
    try:
        db.flush()
        _new_trials(db, study, session)
        db.commit()
    except IntegrityError:
        db.rollback()
        existing = db.scalar(
            select(ParticipantSession).where(
                ParticipantSession.study_id == study.id, ParticipantSession.participant_key == pid
            )
        )
        if existing is None:
            raise
        return existing, False
    return session, True


def _completion_url(study: Study, code: str | None) -> str | None:
    url = study.config.get("completion_url")
    return url.replace("{code}", code) if url and code else None


def session_state(db: Session, session: ParticipantSession) -> dict[str, Any]:
    study = db.get(Study, session.study_id)
    assert study is not None
    # phase group -> [total, answered]
    counts: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0])
    for phase, answered in db.execute(
        select(Trial.phase, Response.id)
        .outerjoin(Response, Response.trial_id == Trial.id)
        .where(Trial.session_id == session.id)
    ):
        group = "practice" if phase == "practice" else "main"
        counts[group][0] += 1
        counts[group][1] += answered is not None
    return {
        "token": session.token,
        "stage": session.stage,
        "design": study.design,
        "practice_total": counts["practice"][0],
        "practice_done": counts["practice"][1],
        "main_total": counts["main"][0],
        "main_done": counts["main"][1],
        "completion_code": session.completion_code,
        "completion_url": _completion_url(study, session.completion_code),
    }


def _refuse_if_finished(session: ParticipantSession) -> None:
    if session.stage == "completed":
        raise Conflict("This session is finished; it can no longer be changed.")


def give_consent(db: Session, session: ParticipantSession) -> None:
    _refuse_if_finished(session)
    if session.stage == "consent":
        session.stage = "device"
        db.commit()


def record_device(db: Session, session: ParticipantSession, info: dict[str, Any]) -> dict[str, Any]:
    """Store screen size and pixel ratio; refuse phones and windows too small for the images."""
    _refuse_if_finished(session)
    study = db.get(Study, session.study_id)
    assert study is not None
    public = public_info(db, study)
    session.screen_width = info["screen_width"]
    session.screen_height = info["screen_height"]
    session.device_pixel_ratio = info["device_pixel_ratio"]
    session.user_agent = info.get("user_agent", "")[:1000]
    problems = []
    if info.get("touch_only"):
        problems.append("This study needs a desktop or laptop computer with a keyboard.")
    if (
        info["window_width"] < public["min_window_width"]
        or info["window_height"] < public["min_window_height"]
    ):
        problems.append(
            f"Please make the browser window at least {public['min_window_width']} x "
            f"{public['min_window_height']} pixels (it is {info['window_width']} x "
            f"{info['window_height']})."
        )
    if not problems and session.stage in ("consent", "device"):
        session.stage = "practice"
    db.commit()
    return {"ok": not problems, "problems": problems, "stage": session.stage}


def _trial_url(token: str, s_id: int, public_ids: dict[int, str]) -> str:
    return f"/api/participate/{token}/stimuli/{public_ids[s_id]}"


def pending_trials(db: Session, session: ParticipantSession) -> list[dict[str, Any]]:
    """The unanswered trials, in order, as opaque ids and image URLs."""
    if session.stage in ("consent", "device"):
        raise Conflict("Consent and the device check come first.")
    rows = list(
        db.execute(
            select(Trial)
            .outerjoin(Response, Response.trial_id == Trial.id)
            .where(Trial.session_id == session.id, Response.id.is_(None))
            .order_by(Trial.index)
        ).scalars()
    )
    ids = {i for t in rows for i in (t.left_stimulus_id, t.right_stimulus_id) if i is not None}
    public_ids = (
        dict(db.execute(select(Stimulus.id, Stimulus.public_id).where(Stimulus.id.in_(ids))).all())
        if ids
        else {}
    )
    n_practice = (
        db.scalar(
            select(func.count())
            .select_from(Trial)
            .where(Trial.session_id == session.id, Trial.phase == "practice")
        )
        or 0
    )
    out = []
    for t in rows:
        images = [_trial_url(session.token, t.left_stimulus_id, public_ids)]
        if t.right_stimulus_id is not None:
            images.append(_trial_url(session.token, t.right_stimulus_id, public_ids))
        phase = "practice" if t.phase == "practice" else "main"  # catch trials look like any other
        number = t.index + 1 if phase == "practice" else t.index - n_practice + 1
        out.append({"id": t.public_id, "phase": phase, "number": number, "images": images})
    return out


def example_pair(db: Session, session: ParticipantSession) -> dict[str, str]:
    study = db.get(Study, session.study_id)
    assert study is not None
    img = study.config["images"]["example"]
    catch_eps = eps_key(study.config["catch_epsilon_255"])
    stim = {k: s for k, s in stimuli_by_key(db, study.id).items() if k[2] == img}
    changed = stim[("example", study.config["run_ids"][0], img, catch_eps)]
    original = stim[("reference", None, img, 0.0)]
    base = f"/api/participate/{session.token}/stimuli/"
    return {"original": base + original.public_id, "changed": base + changed.public_id}


def stimulus_bytes(
    db: Session, storage: LocalStorage, session: ParticipantSession, public_id: str
) -> bytes:
    """The padded PNG of a stimulus this session may see (its trials' images or the example)."""
    s = db.scalar(
        select(Stimulus).where(
            Stimulus.public_id == public_id, Stimulus.study_id == session.study_id
        )
    )
    study = db.get(Study, session.study_id)
    if s is None or study is None:
        raise NotFound("Image not found.")
    example_image = study.config["images"]["example"]
    is_example = s.purpose == "example" or (
        s.purpose == "reference" and s.source_image_id == example_image
    )
    if not is_example:
        in_my_trials = db.scalar(
            select(Trial.id)
            .where(
                Trial.session_id == session.id,
                (Trial.left_stimulus_id == s.id) | (Trial.right_stimulus_id == s.id),
            )
            .limit(1)
        )
        if in_my_trials is None:
            raise NotFound("Image not found.")
    data = storage.get_bytes(s.storage_key)
    size = study.config.get("stimulus_bytes")
    return pad_png(data, int(size)) if size else data


def answer_trial(
    db: Session,
    session: ParticipantSession,
    trial_public_id: str,
    answer: str,
    rt_ms: float,
    shown_at: datetime | None,
) -> dict[str, Any]:
    """Store one answer. The trial id is the idempotency key: sending the same answer again
    returns the same result; a different answer to an answered trial is refused."""
    _refuse_if_finished(session)
    if session.stage in ("consent", "device"):
        raise Conflict("Consent and the device check come first.")
    trial = db.scalar(
        select(Trial).where(Trial.public_id == trial_public_id, Trial.session_id == session.id)
    )
    if trial is None:
        raise NotFound("Trial not found.")
    study = db.get(Study, session.study_id)
    assert study is not None
    valid = ("left", "right") if study.design == "2afc" else ("yes", "no")
    if answer not in valid:
        raise Invalid(f"The answer must be {valid[0]} or {valid[1]}.")
    existing = db.scalar(select(Response).where(Response.trial_id == trial.id))
    if existing is None:
        first_open = db.scalar(
            select(Trial.index)
            .outerjoin(Response, Response.trial_id == Trial.id)
            .where(Trial.session_id == session.id, Response.id.is_(None))
            .order_by(Trial.index)
            .limit(1)
        )
        if first_open is not None and trial.index != first_open:
            raise Conflict("Answer the trials in the order they are given.")
        response = Response(
            trial_id=trial.id,
            answer=answer,
            correct=answer == trial.correct_answer,
            rt_ms=float(rt_ms),
            shown_at=shown_at,
            answered_at=utcnow(),
        )
        db.add(response)
        try:
            db.flush()
        except IntegrityError:  # the same answer arrived twice at once: the first one stands
            db.rollback()
            existing = db.scalar(select(Response).where(Response.trial_id == trial.id))
            assert existing is not None
            response = existing
        else:
            _advance_stage(db, session)
            db.commit()
    else:
        response = existing
    if response.answer != answer:
        raise Conflict("This trial was already answered.")
    state = session_state(db, session)
    return {
        "trial": trial.public_id,
        "stored": True,
        "feedback": response.correct if trial.phase == "practice" else None,
        "stage": session.stage,
        "remaining": state["practice_total"]
        + state["main_total"]
        - state["practice_done"]
        - state["main_done"],
    }


def _advance_stage(db: Session, session: ParticipantSession) -> None:
    open_phases = {
        p
        for (p,) in db.execute(
            select(Trial.phase)
            .outerjoin(Response, Response.trial_id == Trial.id)
            .where(Trial.session_id == session.id, Response.id.is_(None))
            .distinct()
        )
    }
    if not open_phases:
        session.stage = "debrief"
    elif "practice" not in open_phases:
        session.stage = "main"


def complete_session(db: Session, session: ParticipantSession) -> dict[str, Any]:
    """Issue the completion code, only once every trial has its answer stored. Idempotent."""
    study = db.get(Study, session.study_id)
    assert study is not None
    if session.stage != "completed":
        open_count = db.scalar(
            select(func.count())
            .select_from(Trial)
            .outerjoin(Response, Response.trial_id == Trial.id)
            .where(Trial.session_id == session.id, Response.id.is_(None))
        )
        if open_count or session.stage in ("consent", "device"):
            raise Conflict("Some trials are not answered yet.")
        session.completion_code = (
            study.config.get("completion_code") or secrets.token_hex(4).upper()
        )
        session.stage = "completed"
        session.completed_at = utcnow()
        db.commit()
    return {
        "completion_code": session.completion_code,
        "completion_url": _completion_url(study, session.completion_code),
    }


# ---- results -------------------------------------------------------------------------------


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
            fit = {
                "alpha_255": f.alpha,
                "beta": f.beta,
                "guess": f.guess,
                "lapse": f.lapse,
                "criterion": f.criterion,
                "threshold_255": f.threshold,
                "threshold_ci_low": boot.ci_low,
                "threshold_ci_high": boot.ci_high,
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
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in rows:
        w.writerow(
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
                r["shown_at"] or "",
                r["answered_at"] or "",
                int(r["session_id"] in excluded),
                excluded.get(r["session_id"], ""),
            ]
        )
    return buf.getvalue()


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
            "image_size": _run_image_size(r),
            "finished_at": r.finished_at,
        }
        for r, name in rows
    ]


# ---- the researcher's preview of the stimuli ------------------------------------------------


def _decode_png(data: bytes) -> tuple[np.ndarray, str]:
    """Pixels (H x W or H x W x 3, int16) and PIL mode of a stimulus PNG."""
    with PILImage.open(io.BytesIO(data)) as im:
        mode = "L" if im.mode == "L" else "RGB"
        return np.asarray(im.convert(mode), dtype=np.int16), mode


def source_array(data: bytes, mode: str, size: tuple[int, int]) -> np.ndarray:
    """A source image as stimuli are made from it: converted to `mode` ("L" or "RGB") and
    resized (bilinear) to `size` (width, height); H x W or H x W x 3 uint8. The one
    definition shared by the stimulus task (worker.study_tasks) and the preview below."""
    with PILImage.open(io.BytesIO(data)) as opened:
        im = opened.convert(mode)
        if im.size != size:
            im = im.resize(size, PILImage.Resampling.BILINEAR)
        return np.asarray(im, dtype=np.uint8)


def preview_stimuli(
    db: Session,
    storage: LocalStorage,
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


def stimulus_file(db: Session, storage: LocalStorage, study: Study, stimulus_id: int) -> bytes:
    """The stored PNG of one stimulus of this study, exactly as written (not padded)."""
    s = db.scalar(select(Stimulus).where(Stimulus.id == stimulus_id, Stimulus.study_id == study.id))
    if s is None:
        raise NotFound(f"Stimulus {stimulus_id} is not part of study {study.id}.")
    try:
        return storage.get_bytes(s.storage_key)
    except (OSError, ValueError) as exc:
        raise NotFound(f"The file of stimulus {stimulus_id} is missing from storage.") from exc
