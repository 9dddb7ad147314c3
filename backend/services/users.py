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

# what a look-alike comparison ignores at the end of a username ("admin1." is "admin1")
TRAILING_PUNCTUATION = "._-@"


def username_key(username: str) -> str:
    """What two usernames are compared by: their letters without case, trailing punctuation
    ignored ("Admin1", "ADMIN1" and "admin1." are all "admin1")."""
    return username.casefold().rstrip(TRAILING_PUNCTUATION)


def similar_username(db: Session, username: str) -> str | None:
    """An existing username that looks like this one (the same one included), if any."""
    key = username_key(username)
    first = key[:1]
    # the key starts with the username's first letter (any case): only those are compared
    candidates = db.scalars(
        select(User.username).where(func.lower(func.substr(User.username, 1, 1)) == first)
    ).all()
    return next((name for name in candidates if username_key(name) == key), None)


def create_user(db: Session, username: str, password: str, role: str) -> User:
    """A new account; Conflict when the username is taken or looks like one that is."""
    twin = similar_username(db, username)
    if twin == username:
        raise Conflict("That username is taken.")
    if twin is not None:
        raise Conflict(
            f"The username {username!r} is too like the existing {twin!r} (letters compared "
            "without case, trailing punctuation ignored); choose another."
        )
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
        # a new password lifts a pause of failed logins at once (what the 429 promises)
        logins.clear_account_failures(db, user.username)
    db.commit()
    return user
