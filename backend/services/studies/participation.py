"""Taking part in a study: the public page's facts, a participant's session (one per
PROLIFIC_PID), consent (which gives the session its Latin-square slot and its trials, and
is refused once the study's `max_sessions` sessions have consented), the device check, the
trials and their answers, completion, and the stimuli a participant may fetch.

Nothing a participant receives tells a stimulus's condition apart, or links one session's
images to another's: each stimulus is sent as an uncompressed PNG (common.stored_png, equal
bytes outside the pixels for equal sizes) with the same headers, under an id that is an HMAC
of (session token, stimulus) with the server's secret, so that it differs in every session."""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import random
import secrets
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.core.config import get_settings
from backend.core.errors import Conflict, Invalid, NotFound
from backend.core.storage import Storage
from backend.models import ParticipantSession, Response, Stimulus, Study, Trial
from backend.services.studies import adaptive
from backend.services.studies.common import (
    StimulusKey,
    eps_key,
    public_id,
    served_png,
    stimuli_by_key,
    utcnow,
)

# the participant page needs this much room around the image(s), in CSS pixels
WINDOW_MARGIN_W = 120
WINDOW_MARGIN_H = 260
MIN_WINDOW_W = 800
MIN_WINDOW_H = 560
# stimuli smaller than this (CSS pixels) are drawn enlarged by an integer factor, nearest
# neighbour, so that a 28 x 28 digit is not a speck; larger ones are drawn at their pixels
DISPLAY_TARGET_CSS = 256
# the pixel ratios the display rule is defined over: a browser zoomed out to 25 % on a plain
# screen reports 0.25; smaller values (which no browser sends) are taken as that
MIN_PIXEL_RATIO = 0.25
MAX_PIXEL_RATIO = 16.0


def _pixel_ratio(device_pixel_ratio: float) -> float:
    return min(max(float(device_pixel_ratio), MIN_PIXEL_RATIO), MAX_PIXEL_RATIO)


# condition_index of a session that has not consented: it holds no Latin-square slot and no
# trials, and does not count toward the study's max_sessions
UNASSIGNED = -1
FULL = "This study has all the participants it needs; thank you for your interest."


def display_scale(width: int, height: int, device_pixel_ratio: float) -> int:
    """The integer number of device pixels each image pixel is drawn as (nearest neighbour,
    so every image pixel stays one flat square): the largest that keeps the image within
    DISPLAY_TARGET_CSS CSS pixels, and at least 1 (an image larger than the target is drawn
    one image pixel per device pixel). The participant's page uses the same rule."""
    side = max(width, height, 1)
    return max(1, math.floor(DISPLAY_TARGET_CSS * _pixel_ratio(device_pixel_ratio) / side + 1e-9))


def display_size(width: int, height: int, device_pixel_ratio: float) -> tuple[float, float]:
    """The CSS size (width, height) a stimulus is drawn at under `display_scale`."""
    k = display_scale(width, height, device_pixel_ratio)
    dpr = _pixel_ratio(device_pixel_ratio)
    return width * k / dpr, height * k / dpr


def min_window(study: Study, device_pixel_ratio: float = 1.0) -> tuple[int, int]:
    """The smallest browser window (CSS pixels) that shows the study's images as drawn
    (scaled by display_scale) with the question and buttons around them."""
    size = study.config.get("image_size") or [0, 0]
    w, h = display_size(int(size[0]), int(size[1]), device_pixel_ratio)
    shown = 2 if study.design == "2afc" else 1
    return (
        max(MIN_WINDOW_W, math.ceil(shown * w) + WINDOW_MARGIN_W),
        max(MIN_WINDOW_H, math.ceil(h) + WINDOW_MARGIN_H),
    )


def public_info(study: Study) -> dict[str, Any]:
    cfg = study.config
    size = cfg.get("image_size") or [0, 0]
    w, h = int(size[0]), int(size[1])
    min_w, min_h = min_window(study)
    return {
        "name": study.name,
        "design": study.design,
        "accepting": study.state == "open",
        "texts": cfg["texts"],
        "image_width": w,
        "image_height": h,
        "display_target": DISPLAY_TARGET_CSS,
        "display_scale": display_scale(w, h, 1.0),
        # at a device pixel ratio of 1; the device check uses the participant's own
        "min_window_width": min_w,
        "min_window_height": min_h,
        "classes": cfg.get("classes") if study.design == "label" else None,
    }


@dataclass(frozen=True)
class PlannedTrial:
    """One trial of a participant's sequence before it is stored (or, in the researcher's
    preview, instead of being stored)."""

    phase: str  # practice, main or catch
    left: Stimulus
    right: Stimulus | None
    correct_answer: str
    shown: Stimulus  # the stimulus shown as (possibly) changed: its run and epsilon


def plan_trials(
    study: Study,
    stim: dict[StimulusKey, Stimulus],
    condition_index: int,
    rng: random.Random,
) -> list[PlannedTrial]:
    """The trials of participant number `condition_index`: practice first, then main and
    catch trials shuffled by `rng`, which also picks the sides of 2AFC pairs."""
    if study.design == "label":  # one image to name per trial (issue 26)
        from backend.services.studies.labels import plan_label_trials

        return plan_label_trials(study, stim, condition_index, rng)
    cfg = study.config
    runs: list[int] = cfg["run_ids"]
    imgs = cfg["images"]
    catch_eps = float(cfg["catch_epsilon_255"])
    c = condition_index
    is_2afc = study.design == "2afc"

    def pair(phase: str, perturbed: Stimulus, image_id: int) -> PlannedTrial:
        if not is_2afc:
            answer = "yes" if perturbed.epsilon > 0 else "no"
            return PlannedTrial(phase, perturbed, None, answer, perturbed)
        ref = stim[("reference", None, image_id, 0.0)]
        if rng.random() < 0.5:
            return PlannedTrial(phase, perturbed, ref, "left", perturbed)
        return PlannedTrial(phase, ref, perturbed, "right", perturbed)

    planned: list[tuple[str, Stimulus, int]] = []  # (phase, stimulus shown as changed, image)
    practice_signal = [i % 2 == 0 for i in range(len(imgs["practice"]))]
    rng.shuffle(practice_signal)
    for i, img in enumerate(imgs["practice"]):
        rid = runs[(i + c) % len(runs)]
        e = catch_eps if (is_2afc or practice_signal[i]) else 0.0
        planned.append(("practice", stim[("practice", rid, img, eps_key(e))], img))
    main: list[tuple[str, Stimulus, int]] = []
    pool = imgs["main"]
    if adaptive.is_quest(study):
        # QUEST+: max_trials per run, runs interleaved, each on its own image (rotated by
        # participant); every one at the first level until its run's previous answer chooses
        # its level (adaptive.after_answer)
        first = eps_key(adaptive.first_level(adaptive.study_ladder(study)))
        n = len(runs) * int(cfg["quest"]["max_trials"])
        for j in range(n):
            rid, img = runs[j % len(runs)], pool[(c + j) % len(pool)]
            main.append(("main", stim[("main", rid, img, first)], img))
    else:
        cells = cfg["cells"]
        n = len(cells)
        shift = ((c // n) * n) % len(pool)
        for j in range(n):
            rid, e = cells[(j + c) % n]
            img = pool[(shift + j) % len(pool)]
            main.append(("main", stim[("main", int(rid), img, eps_key(e))], img))
    for k, img in enumerate(imgs["catch"]):
        rid = runs[(k + c) % len(runs)]
        main.append(("catch", stim[("catch", rid, img, eps_key(catch_eps))], img))
    rng.shuffle(main)
    return [pair(phase, s, img) for phase, s, img in planned + main]


def _new_trials(db: Session, study: Study, session: ParticipantSession) -> None:
    """Create the session's trials (plan_trials), in the order and sides drawn from the
    system's randomness, not from anything guessable."""
    stim = stimuli_by_key(db, study.id)
    plan = plan_trials(study, stim, session.condition_index, random.SystemRandom())
    for index, t in enumerate(plan):
        db.add(
            Trial(
                session_id=session.id,
                index=index,
                public_id=public_id(16),
                phase=t.phase,
                left_stimulus_id=t.left.id,
                right_stimulus_id=t.right.id if t.right is not None else None,
                correct_answer=t.correct_answer,
                run_id=t.shown.run_id,
                epsilon=t.shown.epsilon,
            )
        )
    if adaptive.is_quest(study):
        adaptive.start_tracks(db, study, session)


def _counted_sessions(db: Session, study_id: int) -> int:
    """Sessions that hold a Latin-square slot (they consented), the next slot's number."""
    return (
        db.scalar(
            select(func.count())
            .select_from(ParticipantSession)
            .where(
                ParticipantSession.study_id == study_id,
                ParticipantSession.condition_index >= 0,
            )
        )
        or 0
    )


def _max_sessions(study: Study) -> int | None:
    cap = study.config.get("max_sessions")
    return int(cap) if isinstance(cap, int | float) else None


PID_TAKEN = (
    "This Prolific ID has already started this study in another browser; "
    "please continue there, or contact the researcher."
)


def _resumable(existing: ParticipantSession, resume_token: str | None) -> ParticipantSession:
    """The existing session of a PROLIFIC_PID, for the browser that holds its token only:
    a PROLIFIC_PID is no secret (anyone can type one into the link)."""
    if resume_token is None or not hmac.compare_digest(
        resume_token.encode(), existing.token.encode()
    ):
        raise Conflict(PID_TAKEN)
    return existing


def start_session(
    db: Session,
    study: Study,
    pid: str | None,
    prolific_study: str | None,
    prolific_session: str | None,
    resume_token: str | None = None,
) -> tuple[ParticipantSession, bool]:
    """A new session for this link, or the existing one of the same PROLIFIC_PID when the
    request carries that session's token (`resume_token`, which its browser kept; Conflict
    otherwise). Returns (session, created). A new session holds no slot and no trials until
    it consents (give_consent); it is refused once the study's `max_sessions` sessions have
    consented."""
    pid = (pid or "").strip() or None

    def same_pid() -> ParticipantSession | None:
        if pid is None:
            return None
        return db.scalar(
            select(ParticipantSession).where(
                ParticipantSession.study_id == study.id, ParticipantSession.participant_key == pid
            )
        )

    existing = same_pid()
    if existing is not None:
        return _resumable(existing, resume_token), False
    if study.state != "open":
        raise Conflict("This study is not accepting participants at the moment.")
    cap = _max_sessions(study)
    if cap is not None and _counted_sessions(db, study.id) >= cap:
        raise Conflict(FULL)
    session = ParticipantSession(
        study_id=study.id,
        token=secrets.token_urlsafe(24),
        participant_key=pid or f"anon-{secrets.token_hex(8)}",
        prolific_pid=pid,
        prolific_study_id=prolific_study,
        prolific_session_id=prolific_session,
        condition_index=UNASSIGNED,
        stage="consent",
    )
    db.add(session)
    try:
        db.commit()
    except IntegrityError:  # the same pid started at the same moment: that session stands
        db.rollback()
        existing = same_pid()
        if existing is None:
            raise
        return _resumable(existing, resume_token), False
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
    """Record consent. A session's first consent gives it the next Latin-square slot (in
    order of consent, under the study's row lock) and creates its trials; it is refused with
    409 when the study's `max_sessions` sessions have already consented."""
    _refuse_if_finished(session)
    if session.condition_index == UNASSIGNED:
        study = db.get(Study, session.study_id)
        assert study is not None
        # serialise slot assignment per study, then look again: a repeated consent may have
        # assigned this session while we waited
        db.execute(select(Study.id).where(Study.id == study.id).with_for_update())
        db.refresh(session)
        if session.condition_index == UNASSIGNED:
            counted = _counted_sessions(db, study.id)
            cap = _max_sessions(study)
            if cap is not None and counted >= cap:
                db.rollback()
                raise Conflict(FULL)
            session.condition_index = counted
            db.flush()
            _new_trials(db, study, session)
    if session.stage == "consent":
        session.stage = "device"
    db.commit()


def device_problems(study: Study, info: dict[str, Any]) -> list[str]:
    """Why this device cannot take the study (empty: it can): a touch-only device, or a window
    too small for the images as they will be drawn (enlarged by display_scale at the
    device's own pixel ratio) with the question and buttons."""
    problems = []
    if info.get("touch_only"):
        problems.append("This study needs a desktop or laptop computer with a keyboard.")
    min_w, min_h = min_window(study, float(info["device_pixel_ratio"]))
    if info["window_width"] < min_w or info["window_height"] < min_h:
        problems.append(
            f"Please make the browser window at least {min_w} x {min_h} pixels, so that the "
            f"images fit at the size they are shown (it is {info['window_width']} x "
            f"{info['window_height']})."
        )
    return problems


def record_device(db: Session, session: ParticipantSession, info: dict[str, Any]) -> dict[str, Any]:
    """Store screen size and pixel ratio; refuse phones and windows too small for the images."""
    _refuse_if_finished(session)
    study = db.get(Study, session.study_id)
    assert study is not None
    session.screen_width = info["screen_width"]
    session.screen_height = info["screen_height"]
    session.device_pixel_ratio = info["device_pixel_ratio"]
    session.user_agent = info.get("user_agent", "")[:1000]
    problems = device_problems(study, info)
    if not problems and session.stage in ("consent", "device"):
        session.stage = "practice"
    db.commit()
    return {"ok": not problems, "problems": problems, "stage": session.stage}


def _id_key() -> bytes:
    """The key of per-session stimulus ids, derived from the server's secret."""
    secret = get_settings().secret_key.encode()
    return hmac.new(secret, b"participant stimulus id", hashlib.sha256).digest()


def session_id_of_stimulus(session_token: str, stimulus_public_id: str) -> str:
    """The id a session sees for a stimulus: HMAC-SHA256 of (session token, the stimulus's
    stored random public id) under a key derived from the server's secret, 32 URL-safe
    characters. The same stimulus has unrelated ids in two sessions; only the server, holding
    the secret, can tell which stimulus an id names (by checking the session's own)."""
    msg = f"{session_token}\x00{stimulus_public_id}".encode()
    mac = hmac.new(_id_key(), msg, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:24]).decode()


def _stimulus_url(token: str, stimulus_public_id: str) -> str:
    return f"/api/participate/{token}/stimuli/{session_id_of_stimulus(token, stimulus_public_id)}"


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
    study = db.get(Study, session.study_id)
    if study is not None and adaptive.is_quest(study):
        rows = adaptive.ready_cut(rows)  # no trial whose level is not chosen yet
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
        images = [_stimulus_url(session.token, public_ids[t.left_stimulus_id])]
        if t.right_stimulus_id is not None:
            images.append(_stimulus_url(session.token, public_ids[t.right_stimulus_id]))
        phase = "practice" if t.phase == "practice" else "main"  # catch trials look like any other
        number = t.index + 1 if phase == "practice" else t.index - n_practice + 1
        out.append({"id": t.public_id, "phase": phase, "number": number, "images": images})
    return out


def example_pair(db: Session, session: ParticipantSession) -> dict[str, str]:
    study = db.get(Study, session.study_id)
    assert study is not None
    img = study.config["images"]["example"]
    if img is None:
        raise NotFound("This study has no example.")
    catch_eps = eps_key(study.config["catch_epsilon_255"])
    stim = {k: s for k, s in stimuli_by_key(db, study.id).items() if k[2] == img}
    changed = stim[("example", study.config["run_ids"][0], img, catch_eps)]
    original = stim[("reference", None, img, 0.0)]
    return {
        "original": _stimulus_url(session.token, original.public_id),
        "changed": _stimulus_url(session.token, changed.public_id),
    }


def _session_stimuli(db: Session, session: ParticipantSession) -> list[Stimulus]:
    """The stimuli this session may see: its trials' images and the instructions' example
    (the example image's changed stimulus and its clean reference)."""
    study = db.get(Study, session.study_id)
    if study is None:
        return []
    ids: set[int] = set()
    for left, right in db.execute(
        select(Trial.left_stimulus_id, Trial.right_stimulus_id).where(
            Trial.session_id == session.id
        )
    ):
        ids.add(left)
        if right is not None:
            ids.add(right)
    example = (Stimulus.source_image_id == (study.config["images"]["example"] or -1)) & (
        Stimulus.purpose.in_(("example", "reference"))
    )
    return list(
        db.scalars(
            select(Stimulus).where(
                Stimulus.study_id == session.study_id, Stimulus.id.in_(ids) | example
            )
        )
    )


def stimulus_bytes(
    db: Session, storage: Storage, session: ParticipantSession, session_stimulus_id: str
) -> bytes:
    """The PNG of a stimulus this session may see, named by its per-session id, as
    common.stored_png: for one study, the same length and the same bytes outside the pixels
    for every stimulus."""
    by_id = {
        session_id_of_stimulus(session.token, s.public_id): s for s in _session_stimuli(db, session)
    }
    s = by_id.get(session_stimulus_id)
    if s is None:
        raise NotFound("Image not found.")
    return served_png(storage.get_bytes(s.storage_key))


def answer_trial(
    db: Session,
    session: ParticipantSession,
    trial_public_id: str,
    answer: str,
    rt_ms: float,
    shown_at: datetime | None,
    display_scale: int | None = None,
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
    if study.design == "label":
        from backend.services.studies.labels import valid_answers

        if answer not in valid_answers(study):
            raise Invalid("The answer must be a class index of this study or none.")
    else:
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
            display_scale=display_scale,
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
            if adaptive.is_quest(study):
                adaptive.after_answer(db, study, session, trial, response.correct)
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
