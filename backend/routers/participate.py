"""The participant's side of a study: public (no login), authorised by the link token (to start)
and by the session token (everything after). Responses carry opaque ids only: no epsilon, run,
side or correct answer is ever sent before the answer (and only practice gets feedback)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse, JSONResponse, Response

from backend.core.config import ROOT
from backend.core.openapi import PNG
from backend.deps import LinkStudyDep, ParticipantDep, SessionDep, StorageDep
from backend.schemas.studies import (
    AnswerIn,
    AnswerOut,
    CompletionOut,
    DeviceCheck,
    DeviceInfo,
    ExamplePayload,
    SessionStart,
    SessionState,
    StudyInfo,
    TrialsPayload,
)
from backend.services.studies import analysis_cache, participation

PARTICIPATE_HTML = ROOT / "frontend" / "participate.html"
NO_STORE = {"Cache-Control": "no-store"}
# every stimulus response carries exactly these headers (with its type and length)
STIMULUS_HEADERS = {"Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff"}

router = APIRouter(prefix="/participate", tags=["participate"])


@router.get("/links/{link_token}", response_model=StudyInfo)
def study_info(study: LinkStudyDep) -> dict[str, Any]:
    """The study's texts and image size, for the page before a session starts."""
    return participation.public_info(study)


@router.post(
    "/links/{link_token}/sessions",
    response_model=SessionState,
    responses={
        200: {"description": "The existing session of this PROLIFIC_PID, resumed."},
        409: {
            "description": "The PROLIFIC_PID started in another browser; or the study is "
            "closed or full."
        },
        201: {"model": SessionState, "description": "A new session."},
    },
)
def start_session(study: LinkStudyDep, body: SessionStart, db: SessionDep) -> JSONResponse:
    """Start a session, or give back the existing one of the same PROLIFIC_PID to the browser
    that holds its token (`resume_token`: resume). 409 when the PROLIFIC_PID started in
    another browser, when the study is not open, or when `max_sessions` sessions have
    consented."""
    session, created = participation.start_session(
        db, study, body.prolific_pid, body.study_id, body.session_id, body.resume_token
    )
    state = participation.session_state(db, session)
    return JSONResponse(SessionState(**state).model_dump(), status_code=201 if created else 200)


@router.get("/{session_token}", response_model=SessionState)
def session_state(session: ParticipantDep, db: SessionDep) -> dict[str, Any]:
    """Where this session stands (to resume after a reload)."""
    return participation.session_state(db, session)


@router.post("/{session_token}/consent", response_model=SessionState)
def consent(session: ParticipantDep, db: SessionDep) -> dict[str, Any]:
    """Record that the participant agreed to take part; the first consent assigns the
    session's counterbalancing slot and trials (409 when the study is full)."""
    participation.give_consent(db, session)
    return participation.session_state(db, session)


@router.post("/{session_token}/device", response_model=DeviceCheck)
def device(session: ParticipantDep, body: DeviceInfo, db: SessionDep) -> dict[str, Any]:
    """Record screen size and pixel ratio; say whether the window is large enough."""
    return participation.record_device(db, session, body.model_dump())


@router.get("/{session_token}/example", response_model=ExamplePayload)
def example(session: ParticipantDep, db: SessionDep) -> dict[str, str]:
    """The instructions' example: one original image and the same image clearly changed."""
    return participation.example_pair(db, session)


@router.get("/{session_token}/trials", response_model=TrialsPayload)
def trials(session: ParticipantDep, db: SessionDep) -> TrialsPayload:
    """The unanswered trials in order: opaque ids and image URLs (for preloading)."""
    return TrialsPayload(data=participation.pending_trials(db, session))


@router.post("/{session_token}/trials/{trial_id}/answer", response_model=AnswerOut)
def answer(
    session: ParticipantDep, trial_id: str, body: AnswerIn, db: SessionDep
) -> dict[str, Any]:
    """Store one answer (repeating it returns the same result)."""
    out = participation.answer_trial(
        db, session, trial_id, body.answer, body.rt_ms, body.shown_at, body.display_scale
    )
    analysis_cache.answer_stored(db, session.study_id)
    return out


@router.post("/{session_token}/complete", response_model=CompletionOut)
def complete(session: ParticipantDep, db: SessionDep) -> dict[str, Any]:
    """The completion code, issued only once every answer is stored."""
    out = participation.complete_session(db, session)
    analysis_cache.answer_stored(db, session.study_id, completed=True)
    return out


@router.get("/{session_token}/stimuli/{public_id}", responses=PNG)
def stimulus(
    session: ParticipantDep, public_id: str, db: SessionDep, storage: StorageDep
) -> Response:
    """One image of this session, by its per-session id (`public_id`, from the trials or the
    example; it names the image in this session only): an uncompressed PNG whose length and
    bytes outside the pixels are the same for every image of the study, with the same headers
    (no ETag or Last-Modified)."""
    data = participation.stimulus_bytes(db, storage, session, public_id)
    return Response(data, media_type="image/png", headers=STIMULUS_HEADERS)


page_router = APIRouter(include_in_schema=False)


@page_router.get("/s/{link_token}")
def participant_page() -> FileResponse:
    """The participant's page; the link token in its URL (/s/{link_token}) is read by the
    page's script, not here."""
    return FileResponse(PARTICIPATE_HTML, headers=NO_STORE)


ROUTERS = [router]
PAGE_ROUTERS = [page_router]
