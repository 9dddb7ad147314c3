"""Login sessions and the failed-login throttle, both kept in the database.

A login creates a LoginSession row holding the SHA-256 of a fresh random token
(backend/core/security.py); the client holds the token (cookie or bearer). A request's token
is live while its row is neither expired nor revoked and its user is active. Revoking sets
revoked_at: a logout revokes its own session, a password change, a deactivation and "sign
out everywhere" revoke all of a user's sessions.

Failed logins are rows of LoginFailure, counted within the window (Settings) against the
username typed ("account"), the username from the client's address ("pair") and the address
("address"). Past a limit, a login is not refused for good but delayed: it must come
LOGIN_DELAY_BASE_S x 2^(failures past the limit) seconds after the latest failure (2, 4, 8 ...
s, at most the window); earlier ones are refused without checking the password (429 with
Retry-After). The rules, each from its own count:

- pair (this username from this address): after LOGIN_MAX_FAILURES_PER_ACCOUNT failures;
- account (this username from anywhere): the same, except from an address the account has
  logged in from before (a stranger elsewhere cannot keep its owner out);
- address (any username from this address): after LOGIN_MAX_FAILURES_PER_ADDRESS failures,
  except from LOGIN_ALLOWED_ADDRESSES (a lab's NAT).

A successful login, a password change and an admin's new password clear the account's
failures (account and pair): the pause is lifted at once. Rows, not process memory: a
restart, or a second server process, sees the same counts.

Each server process keeps the logins it has looked up (`current_login`), so that a request
needs no query for its login: a kept login is trusted only while the auth epoch
(models.AuthEpoch), read as the request's connection leaves the pool, is the one seen when it
was looked up. Every revocation (`revoke_token`, `revoke_user_sessions`) and every change of
a user's role, activity, name or password (a flush of a changed User) adds 1 to the epoch in
its own transaction, so it holds in every process from the next request on.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, delete, event, func, or_, select, update
from sqlalchemy.orm import Session, make_transient_to_detached

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
from backend.db import auth_epoch
from backend.models import AuthEpoch, LoginFailure, LoginSession, User, utcnow

ACCOUNT, ADDRESS, PAIR = "account", "address", "pair"
# a session's last_seen_at is written at most this often (not on every request)
TOUCH_EVERY = timedelta(minutes=1)
# expired sessions are kept this long (an admin can still see them), then deleted
KEEP_ENDED = timedelta(days=7)


def _aware(t: datetime) -> datetime:
    """SQLite hands back naive datetimes (stored as UTC): make them comparable."""
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


# --- the throttle --------------------------------------------------------------------------


def _wait_text(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = -(-seconds // 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


@dataclass(frozen=True)
class Throttled:
    """A login refused before its password is checked: which limit, and for how long."""

    kind: str  # ACCOUNT, PAIR or ADDRESS
    retry_after_s: int

    @property
    def sentence(self) -> str:
        wait = _wait_text(self.retry_after_s)
        if self.kind in (ACCOUNT, PAIR):
            return (
                "Too many failed logins for this account: the next try must wait "
                f"{wait} (each failure doubles the wait), or an admin can set a new "
                "password, which lifts the pause at once."
            )
        return f"Too many failed logins from your address: try again in {wait}."


def pair_value(username: str, address: str) -> str:
    """The LoginFailure value of a username from an address."""
    return f"{username[:60]} @ {address[:37]}"


def delay_s(failures: int, limit: int, settings: Settings) -> float | None:
    """How long after the latest failure the next login must wait, given this many failures
    in the window against a limit; None below the limit."""
    limit = max(1, limit)
    if failures < limit:
        return None
    doublings = min(failures - limit, 40)
    return float(min(settings.login_failure_window_s, settings.login_delay_base_s * 2**doublings))


def address_allowed(address: str, settings: Settings) -> bool:
    """Whether the address is in LOGIN_ALLOWED_ADDRESSES."""
    networks = settings.login_allowed_networks
    if not networks:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def known_address(db: Session, username: str, address: str) -> bool:
    """Whether the account has logged in from this address (a session kept of it)."""
    found = db.scalar(
        select(LoginSession.id)
        .join(User, User.id == LoginSession.user_id)
        .where(User.username == username, LoginSession.ip_address == address[:64])
        .limit(1)
    )
    return found is not None


def throttled(
    db: Session, username: str, address: str | None, settings: Settings, now: datetime
) -> Throttled | None:
    """The pause a login for `username` from `address` is under, if any (the rules are in
    the module's docstring)."""
    since = now - timedelta(seconds=settings.login_failure_window_s)
    per_account = settings.login_max_failures_per_account
    checks = []
    if address:
        checks.append((PAIR, pair_value(username, address), per_account))
    if not address or not known_address(db, username, address):
        checks.append((ACCOUNT, username, per_account))
    if address and not address_allowed(address, settings):
        checks.append((ADDRESS, address, settings.login_max_failures_per_address))
    for kind, value, limit in checks:
        count, latest = db.execute(
            select(func.count(), func.max(LoginFailure.created_at)).where(
                LoginFailure.kind == kind,
                LoginFailure.value == value,
                LoginFailure.created_at > since,
            )
        ).one()
        wait = delay_s(int(count or 0), limit, settings)
        if wait is None or latest is None:
            continue
        left = (_aware(latest) + timedelta(seconds=wait) - now).total_seconds()
        if left > 0:
            return Throttled(kind, max(1, math.ceil(left)))
    return None


def record_failure(
    db: Session, username: str, address: str | None, settings: Settings, now: datetime
) -> None:
    """Count a failed login against its username, its address and the two together; forget
    failures that have left the window (of everyone: the table stays small)."""
    db.add(LoginFailure(kind=ACCOUNT, value=username[:100], created_at=now))
    if address:
        db.add(LoginFailure(kind=ADDRESS, value=address[:100], created_at=now))
        db.add(LoginFailure(kind=PAIR, value=pair_value(username, address), created_at=now))
    cutoff = now - timedelta(seconds=settings.login_failure_window_s)
    db.execute(delete(LoginFailure).where(LoginFailure.created_at <= cutoff))


def clear_account_failures(db: Session, username: str) -> None:
    """The account's failures (from any address) no longer count: after a successful login,
    a password change or an admin's new password. The addresses' own counts stay."""
    prefix = pair_value(username, "")
    db.execute(
        delete(LoginFailure).where(
            or_(
                and_(LoginFailure.kind == ACCOUNT, LoginFailure.value == username[:100]),
                and_(
                    LoginFailure.kind == PAIR,
                    func.substr(LoginFailure.value, 1, len(prefix)) == prefix,
                ),
            )
        )
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
    ended = bool(getattr(result, "rowcount", 0))
    if ended:
        bump_epoch(db)
    return ended


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
    ended = int(getattr(result, "rowcount", 0) or 0)
    if ended:
        bump_epoch(db)
    return ended


# --- the logins a process keeps ------------------------------------------------------------


@dataclass(frozen=True)
class _Kept:
    """A login looked up in the database: the auth epoch then, the session and its user."""

    epoch: int
    session_id: int
    expires_at: datetime
    last_seen_at: datetime
    user: dict[str, object]  # the User row's columns


_kept: dict[str, _Kept] = {}
_KEEP_AT_MOST = 20_000  # logins kept per process (all are forgotten when it is full)
_USER_COLUMNS = tuple(c.key for c in User.__table__.columns)


def bump_epoch(db: Session) -> None:
    """Add 1 to the auth epoch in the caller's transaction: every process looks its kept
    logins up again from the next request on."""
    db.execute(update(AuthEpoch).where(AuthEpoch.id == 1).values(value=AuthEpoch.value + 1))


@event.listens_for(Session, "before_flush")
def _user_changed(db: Session, _flush_context: object, _instances: object) -> None:
    """A changed or deleted User (role, activity, name, password) bumps the epoch in the same
    transaction as the change."""
    if any(isinstance(o, User) for o in db.deleted) or any(
        isinstance(o, User) and db.is_modified(o, include_collections=False) for o in db.dirty
    ):
        db.connection().execute(
            update(AuthEpoch).where(AuthEpoch.id == 1).values(value=AuthEpoch.value + 1)
        )


def forget_kept_logins() -> None:
    """Forget every login this process keeps (tests; a kept one is never wrong to drop)."""
    _kept.clear()


def current_login(db: Session, token: str, now: datetime) -> User | None:
    """The active user of the live session a token names, or None; touches the session (at
    most once a minute). A login this process looked up since the last change of the auth
    epoch is taken from memory (no query); any other is looked up (live_session) and kept.
    The User returned belongs to `db` (a change to it is flushed by it)."""
    key = token_hash(token)
    epoch = auth_epoch(db)
    kept = _kept.get(key)
    if epoch is not None and kept is not None and kept.epoch == epoch and kept.expires_at > now:
        user = User(**kept.user)
        make_transient_to_detached(user)
        db.add(user)
        if now - kept.last_seen_at >= TOUCH_EVERY:
            db.execute(
                update(LoginSession)
                .where(LoginSession.id == kept.session_id)
                .values(last_seen_at=now)
            )
            db.commit()
            _kept[key] = _Kept(epoch, kept.session_id, kept.expires_at, now, kept.user)
        return user
    found = live_session(db, token, now)
    if found is None:
        _kept.pop(key, None)
        return None
    session, user = found
    touch(db, session, now)
    if epoch is not None:
        if len(_kept) >= _KEEP_AT_MOST:
            _kept.clear()
        _kept[key] = _Kept(
            epoch,
            session.id,
            _aware(session.expires_at),
            _aware(session.last_seen_at),
            {c: getattr(user, c) for c in _USER_COLUMNS},
        )
    return user


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
    clear_account_failures(db, user.username)
    revoked = revoke_user_sessions(db, user.id, keep_token=keep_token)
    db.commit()
    return revoked
