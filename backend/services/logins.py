"""Login sessions and the failed-login throttle, both kept in the database.

A login creates a LoginSession row holding the SHA-256 of a fresh random token
(backend/core/security.py); the client holds the token (cookie or bearer). A request's token
is live while its row is neither expired nor revoked and its user is active. Revoking sets
revoked_at: a logout revokes its own session, a password change, a deactivation and "sign
out everywhere" revoke all of a user's sessions.

Failed logins are rows of LoginFailure, one per failure against the username typed
("account") and one against the client's address ("address"). When either has reached its
limit within the window (Settings), further logins are refused, without checking the
password, until enough failures have aged out of the window. A successful login clears its
account's failures (not the address's). Rows, not process memory: a restart, or a second
server process, sees the same counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from backend.core.config import Settings
from backend.core.errors import Invalid
from backend.core.security import (
    hash_password,
    needs_rehash,
    new_session_token,
    password_problem,
    token_hash,
    verify_password,
    verify_password_or_dummy,
)
from backend.models import LoginFailure, LoginSession, User, utcnow

ACCOUNT, ADDRESS = "account", "address"
# a session's last_seen_at is written at most this often (not on every request)
TOUCH_EVERY = timedelta(minutes=1)
# expired sessions are kept this long (an admin can still see them), then deleted
KEEP_ENDED = timedelta(days=7)


def _aware(t: datetime) -> datetime:
    """SQLite hands back naive datetimes (stored as UTC): make them comparable."""
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


# --- the throttle --------------------------------------------------------------------------


@dataclass(frozen=True)
class Throttled:
    """A login refused before its password is checked: which limit, and for how long."""

    kind: str  # ACCOUNT or ADDRESS
    retry_after_s: int

    @property
    def sentence(self) -> str:
        minutes = max(1, -(-self.retry_after_s // 60))
        wait = f"{minutes} minute{'s' if minutes != 1 else ''}"
        if self.kind == ACCOUNT:
            return (
                "Too many failed logins for this account: logins to it are paused. "
                f"Try again in {wait}, or ask an admin to set a new password."
            )
        return f"Too many failed logins from your address: try again in {wait}."


def throttled(
    db: Session, username: str, address: str | None, settings: Settings, now: datetime
) -> Throttled | None:
    """The limit a login for `username` from `address` has reached, if any."""
    since = now - timedelta(seconds=settings.login_failure_window_s)
    checks = [(ACCOUNT, username, settings.login_max_failures_per_account)]
    if address:
        checks.append((ADDRESS, address, settings.login_max_failures_per_address))
    for kind, value, limit in checks:
        recent = (
            LoginFailure.kind == kind,
            LoginFailure.value == value,
            LoginFailure.created_at > since,
        )
        count = db.scalar(select(func.count()).select_from(LoginFailure).where(*recent)) or 0
        if count < max(1, limit):
            continue
        # the login is allowed again once the window holds limit - 1 failures: when the
        # (count - limit + 1)-th oldest of them ages out
        ages_out = db.scalar(
            select(LoginFailure.created_at)
            .where(*recent)
            .order_by(LoginFailure.created_at)
            .offset(count - max(1, limit))
            .limit(1)
        )
        if ages_out is None:  # pruned meanwhile
            continue
        until = _aware(ages_out) + timedelta(seconds=settings.login_failure_window_s)
        return Throttled(kind, max(1, int((until - now).total_seconds() + 0.999)))
    return None


def record_failure(
    db: Session, username: str, address: str | None, settings: Settings, now: datetime
) -> None:
    """Count a failed login against its username and its address; forget failures that
    have left the window (of everyone: the table stays small)."""
    db.add(LoginFailure(kind=ACCOUNT, value=username[:100], created_at=now))
    if address:
        db.add(LoginFailure(kind=ADDRESS, value=address[:100], created_at=now))
    cutoff = now - timedelta(seconds=settings.login_failure_window_s)
    db.execute(delete(LoginFailure).where(LoginFailure.created_at <= cutoff))


def clear_account_failures(db: Session, username: str) -> None:
    """A successful login: its account's failures no longer count."""
    db.execute(
        delete(LoginFailure).where(LoginFailure.kind == ACCOUNT, LoginFailure.value == username)
    )


# --- sessions ------------------------------------------------------------------------------


def create_session(
    db: Session,
    user: User,
    settings: Settings,
    *,
    user_agent: str | None = None,
    address: str | None = None,
    now: datetime | None = None,
) -> str:
    """A new session for `user`; returns its token (the only time it is known). Sessions
    that ended over a week ago are deleted on the way (of everyone: the table stays small)."""
    now = now or utcnow()
    db.execute(delete(LoginSession).where(LoginSession.expires_at < now - KEEP_ENDED))
    token = new_session_token()
    db.add(
        LoginSession(
            user_id=user.id,
            token_hash=token_hash(token),
            created_at=now,
            last_seen_at=now,
            expires_at=now + timedelta(seconds=settings.session_max_age_s),
            user_agent=(user_agent or None) and user_agent[:255],
            ip_address=(address or None) and address[:64],
        )
    )
    return token


def live_session(db: Session, token: str, now: datetime) -> tuple[LoginSession, User] | None:
    """The session a token names and its user, when the session is neither expired nor
    revoked and the user is active; None otherwise."""
    row = db.execute(
        select(LoginSession, User)
        .join(User, User.id == LoginSession.user_id)
        .where(
            LoginSession.token_hash == token_hash(token),
            LoginSession.revoked_at.is_(None),
            LoginSession.expires_at > now,
            User.is_active.is_(True),
        )
    ).first()
    return None if row is None else (row[0], row[1])


def touch(db: Session, session: LoginSession, now: datetime) -> bool:
    """Record (and commit) that the session was used, at most once a minute; True when it
    wrote."""
    if now - _aware(session.last_seen_at) < TOUCH_EVERY:
        return False
    db.execute(update(LoginSession).where(LoginSession.id == session.id).values(last_seen_at=now))
    session.last_seen_at = now
    db.commit()
    return True


def revoke_token(db: Session, token: str, now: datetime | None = None) -> bool:
    """End the session a token names (a logout); True when a live one was ended."""
    result = db.execute(
        update(LoginSession)
        .where(LoginSession.token_hash == token_hash(token), LoginSession.revoked_at.is_(None))
        .values(revoked_at=now or utcnow())
    )
    return bool(getattr(result, "rowcount", 0))


def revoke_user_sessions(
    db: Session, user_id: int, *, keep_token: str | None = None, now: datetime | None = None
) -> int:
    """End every live session of a user (but the one `keep_token` names); how many."""
    now = now or utcnow()
    conditions = [
        LoginSession.user_id == user_id,
        LoginSession.revoked_at.is_(None),
        LoginSession.expires_at > now,
    ]
    if keep_token:
        conditions.append(LoginSession.token_hash != token_hash(keep_token))
    result = db.execute(update(LoginSession).where(*conditions).values(revoked_at=now))
    return int(getattr(result, "rowcount", 0) or 0)


# --- what the auth routes do (each commits its own work) ---------------------------------


@dataclass(frozen=True)
class Login:
    """A login that succeeded: the user and the new session's token."""

    user: User
    token: str


def log_in(
    db: Session,
    username: str,
    password: str,
    settings: Settings,
    *,
    address: str | None = None,
    user_agent: str | None = None,
) -> Login | Throttled | None:
    """Log `username` in: a Login, the limit it has reached (the password is then not
    checked), or None for a wrong username or password or an inactive account (as slow for
    an unknown username as for a wrong password)."""
    limit = throttled(db, username, address, settings, utcnow())
    if limit is not None:
        return limit
    user = db.scalar(select(User).where(User.username == username))
    # End the read before argon2 runs: no transaction (on SQLite, no write lock) is held
    # while the password is checked.
    db.commit()
    password_ok = verify_password_or_dummy(user.password_hash if user else None, password)
    if user is None or not password_ok or not user.is_active:
        record_failure(db, username, address, settings, utcnow())
        db.commit()
        return None
    if needs_rehash(user.password_hash):  # hashed with older parameters: redo it now
        user.password_hash = hash_password(password)
    clear_account_failures(db, username)
    token = create_session(db, user, settings, user_agent=user_agent, address=address)
    db.commit()
    return Login(user, token)


def log_out(db: Session, token: str) -> None:
    """End the session a token names."""
    revoke_token(db, token)
    db.commit()


def sign_out_everywhere(db: Session, user_id: int) -> int:
    """End every live session of a user; how many."""
    revoked = revoke_user_sessions(db, user_id)
    db.commit()
    return revoked


def change_password(
    db: Session,
    user: User,
    current: str,
    new: str,
    settings: Settings,
    *,
    address: str | None = None,
    keep_token: str | None = None,
) -> int | Throttled | None:
    """Change a user's own password: how many other sessions ended (every one but
    `keep_token`'s), the limit reached (nothing checked), or None when `current` is wrong
    (counted as a failed login). A weak new password raises Invalid."""
    limit = throttled(db, user.username, address, settings, utcnow())
    if limit is not None:
        return limit
    problem = password_problem(new, user.username)
    if problem:
        raise Invalid(problem, field="new_password")
    db.commit()  # no transaction is held while argon2 runs
    if not verify_password(user.password_hash, current):
        record_failure(db, user.username, address, settings, utcnow())
        db.commit()
        return None
    user.password_hash = hash_password(new)
    revoked = revoke_user_sessions(db, user.id, keep_token=keep_token)
    db.commit()
    return revoked
