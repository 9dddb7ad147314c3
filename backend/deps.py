"""FastAPI dependencies as Annotated aliases: sessions, the current user, role checks, lookups.

Every "fetch by id or 404" of a route is a dependency here; a lookup raises NotFound, which
backend/main.py answers like every other domain error. A lookup that only researchers may
make checks the role first, so a stranger learns nothing about which ids exist."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request, params
from fastapi import Path as PathParam
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.core.config import Settings, get_settings
from backend.core.errors import NotFound
from backend.core.security import SESSION_COOKIE, cross_site_refusal, token_is_signed
from backend.core.storage import Storage, get_storage
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
    utcnow,
)
from backend.services import assignments, logins


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
StorageDep = Annotated[Storage, Depends(get_storage)]


EXPIRED = "Your login has expired; please log in again."


def request_token(request: Request) -> tuple[str | None, bool]:
    """The request's login token and whether it came from the session cookie: a bearer
    header wins over the cookie."""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None, False
    token = request.cookies.get(SESSION_COOKIE)
    return token or None, token is not None


def _takes_form(dependant: Dependant) -> bool:
    """Whether a route (its dependant) declares form or file parameters: a multipart upload."""
    return any(
        isinstance(field.field_info, params.Form)  # File is a Form
        for field in dependant.body_params
    ) or any(_takes_form(d) for d in dependant.dependencies)


def check_cookie_request(request: Request) -> None:
    """Refuse (403) a state-changing request authenticated by the session cookie that may
    have been forged by another site (backend/core/security.py, cross_site_refusal)."""
    route = request.scope.get("route")
    # Before routing (a middleware checking the login early) the route is not known yet:
    # the origin is checked as for an upload, and the route's own check follows.
    takes_form = _takes_form(route.dependant) if isinstance(route, APIRoute) else True
    refusal = cross_site_refusal(
        method=request.method,
        host=request.headers.get("host"),
        origin=request.headers.get("origin"),
        referer=request.headers.get("referer"),
        content_type=request.headers.get("content-type"),
        route_takes_form=takes_form,
        trusted_origins=get_settings().trusted_origin_list,
    )
    if refusal is not None:
        raise HTTPException(403, detail=refusal)


def signed_token(request: Request) -> str:
    """The request's login token, checked for its signature only (no database): what a
    route that reads a large body checks before reading it. A cookie-authenticated write
    is also checked for cross-site forgery here."""
    token, by_cookie = request_token(request)
    if not token:
        raise HTTPException(401, detail="Not logged in.")
    if not token_is_signed(token):
        raise HTTPException(401, detail=EXPIRED)
    if by_cookie:
        check_cookie_request(request)
    return token


def get_current_user(request: Request, db: SessionDep) -> User:
    """The user of the request's live login session (backend/services/logins.py): 401 when
    there is none, or it was revoked or has expired, or its user was deactivated."""
    token = signed_token(request)
    user = logins.current_login(db, token, utcnow())
    if user is None:
        raise HTTPException(401, detail=EXPIRED)
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def ensure_role(user: User, roles: tuple[str, ...]) -> User:
    """The user, if their role is one of these (403 otherwise)."""
    if user.role not in roles:
        raise HTTPException(403, detail="Your role may not do this.")
    return user


def require_roles(*roles: str) -> Callable[[User], Awaitable[User]]:
    """A dependency that lets only the given roles through (403 otherwise). It is async
    because it does no I/O: FastAPI runs it on the event loop instead of sending it to a
    worker thread, one thread hop fewer on every request of a role-checked route."""

    async def check(user: CurrentUser) -> User:
        return ensure_role(user, roles)

    return check


AdminUser = Annotated[User, Depends(require_roles("admin"))]
ResearcherUser = Annotated[User, Depends(require_roles("researcher", "admin"))]
AnnotatorUser = Annotated[User, Depends(require_roles("annotator"))]
StaffUser = Annotated[User, Depends(require_roles("admin", "researcher", "annotator"))]


def get_dataset(dataset_id: PathId, db: SessionDep, _: ResearcherUser) -> Dataset:
    """A dataset, for researchers (the role is checked first: an annotator gets 403 whether
    the id exists or not)."""
    dataset = db.get(Dataset, dataset_id)
    if dataset is None:
        raise NotFound("Dataset not found.")
    return dataset


def find_image(image_id: int, db: Session, user: User) -> Image:
    """The image, if this user may see it: an annotator only an image of a dataset open to
    them, with the same 404 for one that is missing (backend/services/assignments.py)."""
    if not 1 <= image_id <= DB_INT_MAX:
        image_id = 0  # names nothing: the same answer as any other missing id
    return assignments.open_image(db, user, image_id)


def get_image(image_id: PathId, db: SessionDep, user: StaffUser) -> Image:
    return find_image(image_id, db, user)


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


def refuse_oversized_upload(request: Request, declared_file_size: int | None) -> None:
    """413 when an upload declares (Content-Length) or spooled (the file's size) more than
    MAX_UPLOAD_BYTES; the routes' own streaming cap stops a body that lies about its size."""
    limit = get_settings().max_upload_bytes
    length = request.headers.get("content-length", "")
    if (length.isdigit() and int(length) > limit) or (
        declared_file_size is not None and declared_file_size > limit
    ):
        raise HTTPException(413, detail="The upload is larger than the allowed size.")
