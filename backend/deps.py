"""FastAPI dependencies as Annotated aliases: sessions, the current user, role checks, lookups.

Every "fetch by id or 404" of a route is a dependency here; a lookup raises NotFound, which
backend/main.py answers like every other domain error. A lookup that only researchers may
make checks the role first, so a stranger learns nothing about which ids exist."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request
from fastapi import Path as PathParam
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.core.config import Settings, get_settings
from backend.core.errors import NotFound
from backend.core.security import SESSION_COOKIE, read_session_token
from backend.core.storage import LocalStorage, get_storage
from backend.db import get_sessionmaker
from backend.models import (
    Annotation,
    Dataset,
    Image,
    MaskSet,
    ParticipantSession,
    Study,
    TrainingRun,
    User,
)


def get_db() -> Iterator[Session]:
    session = get_sessionmaker()()
    try:
        yield session
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_db)]

# Row ids are PostgreSQL integers: an id outside their range names nothing, and is refused
# (422) before it reaches the database.
DB_INT_MAX = 2**31 - 1
PathId = Annotated[int, PathParam(ge=1, le=DB_INT_MAX)]
QueryId = Annotated[int | None, Query(ge=1, le=DB_INT_MAX)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
StorageDep = Annotated[LocalStorage, Depends(get_storage)]


def _token_from(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.cookies.get(SESSION_COOKIE)


def signed_token(request: Request) -> tuple[int, str]:
    """The request's session token, checked for its signature and age only (no database):
    what a route that reads a large body checks before reading it."""
    token = _token_from(request)
    if not token:
        raise HTTPException(401, detail="Not logged in.")
    parsed = read_session_token(token)
    if parsed is None:
        raise HTTPException(401, detail="Your login has expired; please log in again.")
    return parsed


def get_current_user(request: Request, db: SessionDep) -> User:
    user_id, pw_tail = signed_token(request)
    user = db.get(User, user_id)
    if user is None or not user.is_active or user.password_hash[-12:] != pw_tail:
        raise HTTPException(401, detail="Your login has expired; please log in again.")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def require_roles(*roles: str) -> Callable[[User], User]:
    """A dependency that lets only the given roles through (403 otherwise)."""

    def check(user: CurrentUser) -> User:
        if user.role not in roles:
            raise HTTPException(403, detail="Your role may not do this.")
        return user

    check.allowed_roles = roles  # type: ignore[attr-defined]
    return check


AdminUser = Annotated[User, Depends(require_roles("admin"))]
ResearcherUser = Annotated[User, Depends(require_roles("researcher", "admin"))]
AnnotatorUser = Annotated[User, Depends(require_roles("annotator"))]
StaffUser = Annotated[User, Depends(require_roles("admin", "researcher", "annotator"))]


def get_dataset(dataset_id: PathId, db: SessionDep, _: CurrentUser) -> Dataset:
    dataset = db.get(Dataset, dataset_id)
    if dataset is None:
        raise NotFound("Dataset not found.")
    return dataset


def find_image(image_id: int, db: Session) -> Image:
    image = db.get(Image, image_id) if 1 <= image_id <= DB_INT_MAX else None
    if image is None:
        raise NotFound("Image not found.")
    return image


def get_image(image_id: PathId, db: SessionDep, _: CurrentUser) -> Image:
    return find_image(image_id, db)


def get_run(run_id: PathId, db: SessionDep, _: ResearcherUser) -> TrainingRun:
    run = db.get(TrainingRun, run_id)
    if run is None:
        raise NotFound("Run not found.")
    return run


def get_study(study_id: PathId, db: SessionDep, _: ResearcherUser) -> Study:
    study = db.get(Study, study_id)
    if study is None:
        raise NotFound("Study not found.")
    return study


def get_annotation(annotation_id: PathId, db: SessionDep, _: ResearcherUser) -> Annotation:
    annotation = db.get(Annotation, annotation_id)
    if annotation is None:
        raise NotFound("Annotation not found.")
    return annotation


def get_mask_set(mask_set_id: PathId, db: SessionDep, _: ResearcherUser) -> MaskSet:
    mask_set = db.get(MaskSet, mask_set_id)
    if mask_set is None:
        raise NotFound("Mask set not found.")
    return mask_set


def get_optional_mask_set(
    db: SessionDep, _: ResearcherUser, mask_set_id: QueryId = None
) -> MaskSet | None:
    """The mask set a query names (?mask_set_id=), or None when it names none."""
    return None if mask_set_id is None else get_mask_set(mask_set_id, db, _)


def get_link_study(link_token: str, db: SessionDep) -> Study:
    """The study a participant's link names (no login: the link token is the authority)."""
    study = db.scalar(select(Study).where(Study.link_token == link_token))
    if study is None:
        raise NotFound("This study link is not valid.")
    return study


def get_participant(session_token: str, db: SessionDep) -> ParticipantSession:
    """The participant's session its token names (everything after the start uses it)."""
    session = db.scalar(select(ParticipantSession).where(ParticipantSession.token == session_token))
    if session is None:
        raise NotFound("Session not found.")
    return session


DatasetDep = Annotated[Dataset, Depends(get_dataset)]
ImageDep = Annotated[Image, Depends(get_image)]
RunDep = Annotated[TrainingRun, Depends(get_run)]
StudyDep = Annotated[Study, Depends(get_study)]
AnnotationDep = Annotated[Annotation, Depends(get_annotation)]
MaskSetDep = Annotated[MaskSet, Depends(get_mask_set)]
OptionalMaskSetDep = Annotated[MaskSet | None, Depends(get_optional_mask_set)]
LinkStudyDep = Annotated[Study, Depends(get_link_study)]
ParticipantDep = Annotated[ParticipantSession, Depends(get_participant)]
