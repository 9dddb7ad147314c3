from fastapi import APIRouter, HTTPException, Request
from sqlalchemy import select

from backend.deps import AdminUser, PathId, SessionDep, request_token
from backend.models import User
from backend.schemas.users import (
    SessionsRevoked,
    UserCreate,
    UserPublic,
    UsersPublic,
    UserUpdate,
)
from backend.services import logins, users

router = APIRouter(prefix="/users", tags=["users"])


@router.get("", response_model=UsersPublic)
def list_users(_: AdminUser, db: SessionDep) -> UsersPublic:
    """All accounts."""
    rows = db.scalars(select(User).order_by(User.id)).all()
    return UsersPublic(data=[UserPublic.model_validate(u) for u in rows], count=len(rows))


@router.post("", response_model=UserPublic, status_code=201)
def create_user(body: UserCreate, _: AdminUser, db: SessionDep) -> User:
    """Create an account with a role. The password must have at least 10 characters, not
    contain the username, and not be a common password."""
    return users.create_user(db, body.username, body.password, body.role)


def _get_user(db: SessionDep, user_id: int) -> User:
    user = db.get(User, user_id)
    if user is None:
        raise HTTPException(404, detail="User not found.")
    return user


@router.patch("/{user_id}", response_model=UserPublic)
def update_user(
    user_id: PathId, body: UserUpdate, request: Request, admin: AdminUser, db: SessionDep
) -> User:
    """Change an account's role, password or whether it may log in. A new password, or a
    deactivation, ends every session of the account (an admin changing their own password
    stays logged in here and is logged out elsewhere)."""
    return users.update_user(
        db,
        _get_user(db, user_id),
        admin,
        role=body.role,
        is_active=body.is_active,
        password=body.password,
        admin_token=request_token(request)[0],
    )


@router.post("/{user_id}/sign-out-everywhere", response_model=SessionsRevoked)
def sign_out_everywhere(user_id: PathId, _: AdminUser, db: SessionDep) -> SessionsRevoked:
    """End every login session of an account at once (its browsers and bearer tokens must
    log in again); the account stays active."""
    return SessionsRevoked(revoked=logins.sign_out_everywhere(db, _get_user(db, user_id).id))


ROUTERS = [router]
