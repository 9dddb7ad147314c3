"""FastAPI dependencies as Annotated aliases: sessions, the current user, role checks, lookups."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session

from backend.core.config import Settings, get_settings
from backend.core.security import SESSION_COOKIE, read_session_token
from backend.core.storage import LocalStorage, get_storage
from backend.db import get_sessionmaker
from backend.models import Dataset, Image, User


def get_db() -> Iterator[Session]:
    session = get_sessionmaker()()
    try:
        yield session
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
StorageDep = Annotated[LocalStorage, Depends(get_storage)]


def _token_from(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.cookies.get(SESSION_COOKIE)


def get_current_user(request: Request, db: SessionDep) -> User:
    token = _token_from(request)
    if not token:
        raise HTTPException(401, detail="Not logged in.")
    parsed = read_session_token(token)
    if parsed is None:
        raise HTTPException(401, detail="Your login has expired; please log in again.")
    user_id, pw_tail = parsed
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


def get_dataset(dataset_id: int, db: SessionDep) -> Dataset:
    dataset = db.get(Dataset, dataset_id)
    if dataset is None:
        raise HTTPException(404, detail="Dataset not found.")
    return dataset


def get_image(image_id: int, db: SessionDep) -> Image:
    image = db.get(Image, image_id)
    if image is None:
        raise HTTPException(404, detail="Image not found.")
    return image


DatasetDep = Annotated[Dataset, Depends(get_dataset)]
ImageDep = Annotated[Image, Depends(get_image)]
