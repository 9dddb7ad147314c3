"""The participant's side of a study: public (no login), authorised by the link token (to start)
and by the session token (everything after). Responses carry opaque ids only: no epsilon, run,
side or correct answer is ever sent before the answer (and only practice gets feedback)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, JSONResponse, Response
from sqlalchemy import select

from backend.core.config import ROOT
from backend.deps import SessionDep, StorageDep
from backend.models import ParticipantSession, Study
from backend.schemas.studies import (
    AnswerIn,
    AnswerOut,
    CompletionOut,
    DeviceInfo,
    ExamplePayload,
    SessionStart,
    SessionState,
    StudyInfo,
    TrialsPayload,
)
from backend.services import studies as service
from backend.services.studies import StudyError

PARTICIPATE_HTML = ROOT / "frontend" / "participate.html"
NO_STORE = {"Cache-Control": "no-store"}

router = APIRouter(prefix="/participate", tags=["participate"])


def _study_by_link(db, link_token: str) -> Study:
    study = db.scalar(select(Study).where(Study.link_token == link_token))
    if study is None:
        raise HTTPException(404, detail="This study link is not valid.")
    return study


def _session(db, token: str) -> ParticipantSession:
    try:
        return service.get_session(db, token)
    except StudyError as exc:
        raise HTTPException(exc.status_code, detail=str(exc)) from exc


def _call(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except StudyError as exc:
        raise HTTPException(exc.status_code, detail=str(exc)) from exc


@router.get("/links/{link_token}", response_model=StudyInfo)
def study_info(link_token: str, db: SessionDep):
    """The study's texts and image size, for the page before a session starts."""
    return service.public_info(db, _study_by_link(db, link_token))


@router.post("/links/{link_token}/sessions", response_model=SessionState)
def start_session(link_token: str, body: SessionStart, db: SessionDep):
    """Start a session, or give back the existing one of the same PROLIFIC_PID (resume)."""
    study = _study_by_link(db, link_token)
    session, created = _call(
        service.start_session, db, study, body.prolific_pid, body.study_id, body.session_id
    )
    state = service.session_state(db, session)
    return JSONResponse(SessionState(**state).model_dump(), status_code=201 if created else 200)


@router.get("/{session_token}", response_model=SessionState)
def session_state(session_token: str, db: SessionDep):
    """Where this session stands (to resume after a reload)."""
    return service.session_state(db, _session(db, session_token))


@router.post("/{session_token}/consent", response_model=SessionState)
def consent(session_token: str, db: SessionDep):
    """Record that the participant agreed to take part."""
    session = _session(db, session_token)
    _call(service.give_consent, db, session)
    return service.session_state(db, session)


@router.post("/{session_token}/device")
def device(session_token: str, body: DeviceInfo, db: SessionDep) -> dict:
    """Record screen size and pixel ratio; say whether the window is large enough."""
    session = _session(db, session_token)
    return _call(service.record_device, db, session, body.model_dump())


@router.get("/{session_token}/example", response_model=ExamplePayload)
def example(session_token: str, db: SessionDep):
    """The instructions' example: one original image and the same image clearly changed."""
    return _call(service.example_pair, db, _session(db, session_token))


@router.get("/{session_token}/trials", response_model=TrialsPayload)
def trials(session_token: str, db: SessionDep):
    """The unanswered trials in order: opaque ids and image URLs (for preloading)."""
    session = _session(db, session_token)
    return TrialsPayload(data=_call(service.pending_trials, db, session))


@router.post("/{session_token}/trials/{trial_id}/answer", response_model=AnswerOut)
def answer(session_token: str, trial_id: str, body: AnswerIn, db: SessionDep):
    """Store one answer (repeating it returns the same result)."""
    session = _session(db, session_token)
    return _call(
        service.answer_trial, db, session, trial_id, body.answer, body.rt_ms, body.shown_at
    )


@router.post("/{session_token}/complete", response_model=CompletionOut)
def complete(session_token: str, db: SessionDep):
    """The completion code, issued only once every answer is stored."""
    return _call(service.complete_session, db, _session(db, session_token))


@router.get("/{session_token}/stimuli/{public_id}")
def stimulus(session_token: str, public_id: str, db: SessionDep, storage: StorageDep) -> Response:
    """One image of this session, padded to the study's common file size."""
    session = _session(db, session_token)
    data = _call(service.stimulus_bytes, db, storage, session, public_id)
    return Response(
        data, media_type="image/png", headers={"Cache-Control": "private, max-age=86400"}
    )


page_router = APIRouter(include_in_schema=False)


@page_router.get("/s/{link_token}")
def participant_page(link_token: str) -> FileResponse:  # read by the page
    """The participant's page; the link token in its URL is read by the page's script."""
    return FileResponse(PARTICIPATE_HTML, headers=NO_STORE)


ROUTERS = [router]
PAGE_ROUTERS = [page_router]
