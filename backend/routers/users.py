from fastapi import APIRouter, HTTPException, Request
from sqlalchemy import func, select

from backend.core.errors import Invalid
from backend.core.security import hash_password, password_problem
from backend.deps import AdminUser, PathId, SessionDep, request_token
from backend.models import User
from backend.schemas.users import (
    SessionsRevoked,
    UserCreate,
    UserPublic,
    UsersPublic,
    UserUpdate,
)
from backend.services import logins

router = APIRouter(prefix="/users", tags=["users"])


@router.get("", response_model=UsersPublic)
def list_users(_: AdminUser, db: SessionDep) -> UsersPublic:
    """All accounts."""
    users = db.scalars(select(User).order_by(User.id)).all()
    return UsersPublic(data=[UserPublic.model_validate(u) for u in users], count=len(users))


@router.post("", response_model=UserPublic, status_code=201)
def create_user(body: UserCreate, _: AdminUser, db: SessionDep) -> User:
    """Create an account with a role. The password must have at least 10 characters, not
    contain the username, and not be a common password."""
    if db.scalar(select(User.id).where(User.username == body.username)) is not None:
        raise HTTPException(409, detail="That username is taken.")
    db.commit()  # no transaction is held while argon2 hashes
    password_hash = hash_password(body.password)
    user = User(username=body.username, password_hash=password_hash, role=body.role)
    db.add(user)
    db.commit()
    return user


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
    user = _get_user(db, user_id)
    password_hash = None
    if body.password is not None:
        problem = password_problem(body.password, user.username)
        if problem:
            raise Invalid(problem, field="password")
        db.commit()  # no transaction is held while argon2 hashes
        password_hash = hash_password(body.password)
    if user.id == admin.id and (body.role not in (None, "admin") or body.is_active is False):
        active_admins = db.scalar(
            select(func.count()).select_from(User).where(User.role == "admin", User.is_active)
        )
        if (active_admins or 0) <= 1:
            raise HTTPException(409, detail="The last active admin cannot lose the admin role.")
    if body.role is not None:
        user.role = body.role
    if body.is_active is not None:
        user.is_active = body.is_active
    if body.is_active is False:
        logins.revoke_user_sessions(db, user.id)
    if password_hash is not None:
        user.password_hash = password_hash
        keep = request_token(request)[0] if user.id == admin.id else None
        logins.revoke_user_sessions(db, user.id, keep_token=keep)
    db.commit()
    return user


@router.post("/{user_id}/sign-out-everywhere", response_model=SessionsRevoked)
def sign_out_everywhere(user_id: PathId, _: AdminUser, db: SessionDep) -> SessionsRevoked:
    """End every login session of an account at once (its browsers and bearer tokens must
    log in again); the account stays active."""
    user = _get_user(db, user_id)
    revoked = logins.revoke_user_sessions(db, user.id)
    db.commit()
    return SessionsRevoked(revoked=revoked)


ROUTERS = [router]
