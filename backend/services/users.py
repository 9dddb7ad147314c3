"""Accounts, the admin's side: create one, change its role, password or whether it may log
in. A new password or a deactivation ends the account's sessions (backend/services/logins.py).
No transaction is held while argon2 hashes a password."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.core.errors import Conflict, Invalid
from backend.core.security import hash_password, password_problem
from backend.models import User
from backend.services import logins


def create_user(db: Session, username: str, password: str, role: str) -> User:
    """A new account; Conflict when the username is taken."""
    if db.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict("That username is taken.")
    db.commit()  # no transaction is held while argon2 hashes
    user = User(username=username, password_hash=hash_password(password), role=role)
    db.add(user)
    db.commit()
    return user


def update_user(
    db: Session,
    user: User,
    admin: User,
    *,
    role: str | None = None,
    is_active: bool | None = None,
    password: str | None = None,
    admin_token: str | None = None,
) -> User:
    """Change what is given. A new password, or a deactivation, ends every session of the
    account (but the admin's own, `admin_token`, when admins change their own password). The
    last active admin may not lose the role."""
    password_hash = None
    if password is not None:
        problem = password_problem(password, user.username)
        if problem:
            raise Invalid(problem, field="password")
        db.commit()  # no transaction is held while argon2 hashes
        password_hash = hash_password(password)
    if user.id == admin.id and (role not in (None, "admin") or is_active is False):
        active_admins = db.scalar(
            select(func.count()).select_from(User).where(User.role == "admin", User.is_active)
        )
        if (active_admins or 0) <= 1:
            raise Conflict("The last active admin cannot lose the admin role.")
    if role is not None:
        user.role = role
    if is_active is not None:
        user.is_active = is_active
    if is_active is False:
        logins.revoke_user_sessions(db, user.id)
    if password_hash is not None:
        user.password_hash = password_hash
        keep = admin_token if user.id == admin.id else None
        logins.revoke_user_sessions(db, user.id, keep_token=keep)
    db.commit()
    return user
