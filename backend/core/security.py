"""Passwords (argon2id hashing and the policy for new ones), login tokens, and the
cross-site request check for cookie-authenticated writes.

A login token is 32 random bytes (URL-safe base64) and an HMAC of them under SECRET_KEY:
`<random>.<signature>`. It carries nothing about the user or the password. The server keeps
only its SHA-256 (backend/models.py, LoginSession); the signature lets a route refuse a
made-up token before it touches the database or reads a body, and changing SECRET_KEY
invalidates every token at once."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import threading
from functools import lru_cache
from urllib.parse import urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from backend.core.common_passwords import COMMON_PASSWORDS
from backend.core.config import get_settings

SESSION_COOKIE = "sipat_session"
# argon2id with one of OWASP's recommended minimum settings (12 MiB, 3 passes, 1 lane): about
# 17 ms a check on one laptop core, so fifty logins at once are answered within a second or
# two, while each guess still costs an attacker 12 MiB and the login throttle
# (services/logins.py) bounds the guesses. Hashes made with other parameters still verify,
# and are redone at their next login (needs_rehash).
_hasher = PasswordHasher(time_cost=3, memory_cost=12 * 1024, parallelism=1)
# at most one hash per core at a time: a burst of logins queues here instead of thrashing
# the CPU (and holding 19 MiB per waiting request)
_hashing = threading.BoundedSemaphore(os.cpu_count() or 2)

MIN_PASSWORD_LENGTH = 10
TOKEN_BYTES = 32


def hash_password(password: str) -> str:
    """The argon2id hash of a password (slow by design: call it outside a transaction)."""
    with _hashing:
        return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        with _hashing:
            return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether a (verified) hash was made with other parameters than today's."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


@lru_cache(maxsize=1)
def dummy_password_hash() -> str:
    """A hash of a random password, made with the same parameters as real ones: verifying
    against it costs what verifying a real user's password costs."""
    return _hasher.hash(secrets.token_urlsafe(24))


def verify_password_or_dummy(password_hash: str | None, password: str) -> bool:
    """verify_password, taking as long when there is no account (password_hash None): an
    unknown username cannot be told from a wrong password by the time the answer takes."""
    if password_hash is None:
        verify_password(dummy_password_hash(), password)
        return False
    return verify_password(password_hash, password)


# --- the password policy -------------------------------------------------------------------

_EDGE_CHARACTERS = "0123456789!@#$%^&*()-_=+.,;:?~`'\"[]{}<>/\\| "


def is_common_password(password: str) -> bool:
    """On the shipped list of common passwords (backend/core/common_passwords.py), in any
    case, or one of them with only digits and symbols added before or after
    ("Password2024!", "!!sunshine123")."""
    lowered = password.lower()
    if lowered in COMMON_PASSWORDS:
        return True
    core = lowered.strip(_EDGE_CHARACTERS)
    return bool(core) and core in COMMON_PASSWORDS


def password_problem(password: str, username: str | None = None) -> str | None:
    """The rule a new password breaks, as a sentence; None when it may be used."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"The password must have at least {MIN_PASSWORD_LENGTH} characters."
    if username and username.lower() in password.lower():
        return "The password must not be or contain the username."
    if is_common_password(password):
        return (
            "The password is too common: it is one of the most used passwords (or one with "
            "only digits or symbols added). Choose a longer phrase of unrelated words."
        )
    return None


# --- login tokens --------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _signature(random_part: str) -> str:
    key = get_settings().secret_key.encode()
    return _b64(hmac.new(key, b"login-session:" + random_part.encode(), "sha256").digest())


def new_session_token() -> str:
    """A fresh login token: 32 random bytes and their signature."""
    random_part = _b64(secrets.token_bytes(TOKEN_BYTES))
    return f"{random_part}.{_signature(random_part)}"


def token_is_signed(token: str) -> bool:
    """Whether a token was made by new_session_token under the current SECRET_KEY (it may
    still be expired or revoked: only the database says whether it is live)."""
    random_part, dot, signature = token.partition(".")
    if not dot or len(random_part) != 43 or len(signature) != 43:
        return False
    return hmac.compare_digest(signature, _signature(random_part))


def token_hash(token: str) -> str:
    """What the database keeps of a token: its hex SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()


# --- cross-site writes with the session cookie ---------------------------------------------

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# the bodies an HTML form (or a no-CORS fetch) can send to another site without a preflight
FORM_MEDIA_TYPES = frozenset(
    {"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"}
)
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def _host_port(netloc: str, scheme: str = "") -> str:
    """`host[:port]`, lower case, without the scheme's default port."""
    netloc = netloc.strip().lower()
    default = _DEFAULT_PORTS.get(scheme)
    if default and netloc.endswith(":" + default):
        netloc = netloc[: -len(default) - 1]
    return netloc


def _origin_of(url: str) -> tuple[str, str] | None:
    """(scheme, host[:port]) of an Origin or Referer value; None when it names no site
    (`null`, garbage)."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return parts.scheme, _host_port(parts.netloc, parts.scheme)


def cross_site_refusal(
    *,
    method: str,
    host: str | None,
    origin: str | None,
    referer: str | None,
    content_type: str | None,
    route_takes_form: bool,
    trusted_origins: list[str],
) -> str | None:
    """Why a request authenticated by the session cookie (no bearer header) is refused as
    a possible cross-site request forgery; None when it may proceed.

    A state-changing request must come from this server's own pages: its Origin (or, when
    there is none, its Referer) must name the server's own host (the Host header) or one of
    TRUSTED_ORIGINS. A body a cross-site form could send (form-encoded, multipart, text) is
    refused on routes that take JSON. Browsers send an Origin with every cross-origin
    write, so a write with neither header comes from a script or a tool, not a forged page,
    and proceeds (on the upload routes as elsewhere)."""
    if method.upper() in SAFE_METHODS:
        return None
    source_header = origin if origin is not None else referer
    if source_header is not None:
        source = _origin_of(source_header)
        own = _host_port(host or "")
        allowed = source is not None and (
            source[1] == own or source in {_origin_of(o) for o in trusted_origins}
        )
        if not allowed:
            return (
                "Refused as a cross-site request: it was sent by a page of another site "
                "(its Origin is not this server's). Use the app's own pages, or a bearer token."
            )
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type in FORM_MEDIA_TYPES:
        if not route_takes_form:
            return (
                "Refused as a possible cross-site request: this route takes JSON, and a "
                f"{media_type} body sent with the session cookie is what a forged form sends. "
                "Send application/json."
            )
    return None
