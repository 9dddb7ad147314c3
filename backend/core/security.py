"""Password hashing (argon2id) and signed session tokens (cookie or bearer)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from backend.core.config import get_settings

SESSION_COOKIE = "sipat_session"
_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(get_settings().secret_key, salt="session")


def make_session_token(user_id: int, password_hash: str) -> str:
    # The hash's tail ties the token to the current password: changing it logs out everywhere.
    return _serializer().dumps({"uid": user_id, "pw": password_hash[-12:]})


def read_session_token(token: str) -> tuple[int, str] | None:
    try:
        data = _serializer().loads(token, max_age=get_settings().session_max_age_s)
    except (BadSignature, SignatureExpired):
        return None
    if not isinstance(data, dict) or "uid" not in data:
        return None
    return int(data["uid"]), str(data.get("pw", ""))
