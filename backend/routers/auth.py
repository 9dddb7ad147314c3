"""Logging in and out. A login is a server-side session (backend/services/logins.py): the
random token goes to the client as the session cookie and as a bearer token; the database
keeps its hash. Failed logins are throttled per account and per client address."""

from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from sqlalchemy import select

from backend.core.config import Settings
from backend.core.errors import Invalid
from backend.core.openapi import ErrorResponse
from backend.core.security import (
    SESSION_COOKIE,
    dummy_password_hash,
    hash_password,
    needs_rehash,
    password_problem,
    verify_password,
    verify_password_or_dummy,
)
from backend.deps import CurrentUser, SessionDep, SettingsDep, check_cookie_request, request_token
from backend.models import User, utcnow
from backend.schemas.users import (
    LoginRequest,
    LoginResponse,
    PasswordChange,
    SessionsRevoked,
    UserPublic,
)
from backend.services import logins

router = APIRouter(prefix="/auth", tags=["auth"])

WRONG = "Incorrect username or password."
THROTTLED_RESPONSES: dict[int | str, dict[str, Any]] = {
    429: {
        "model": ErrorResponse,
        "description": "Too many failed logins for the account or from the address; the "
        "Retry-After header gives the seconds to wait.",
    }
}

CROSS_SITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorResponse, "description": "Refused as a cross-site request."}
}

dummy_password_hash()  # made now, so that the first unknown-user login is not slower


def client_address(request: Request) -> str | None:
    """The client's IP address as the server sees it (behind a proxy, run uvicorn with
    --proxy-headers and --forwarded-allow-ips so that this is the real client)."""
    return request.client.host if request.client else None


def _set_cookie(response: Response, token: str, settings: Settings) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=settings.session_max_age_s,
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookie,
    )


def _clear_cookie(response: Response, settings: Settings) -> None:
    response.delete_cookie(
        SESSION_COOKIE, httponly=True, samesite="lax", secure=settings.secure_cookie
    )


@router.post("/login", response_model=LoginResponse, responses=THROTTLED_RESPONSES)
def login(
    body: LoginRequest, request: Request, response: Response, db: SessionDep, settings: SettingsDep
) -> LoginResponse:
    """Log in with a username and password; starts a session, sets its cookie and returns
    its token for use as a bearer token. After too many failures (per account, per address)
    the answer is 429 with Retry-After, and the password is not checked."""
    address = client_address(request)
    limit = logins.throttled(db, body.username, address, settings, utcnow())
    if limit is not None:
        raise HTTPException(
            429, detail=limit.sentence, headers={"Retry-After": str(limit.retry_after_s)}
        )
    user = db.scalar(select(User).where(User.username == body.username))
    # End the read before argon2 runs: no transaction (on SQLite, no write lock) is held
    # while the password is checked.
    db.commit()
    # As slow for an unknown username as for a wrong password.
    password_ok = verify_password_or_dummy(user.password_hash if user else None, body.password)
    if user is None or not password_ok or not user.is_active:
        logins.record_failure(db, body.username, address, settings, utcnow())
        db.commit()
        raise HTTPException(401, detail=WRONG)
    if needs_rehash(user.password_hash):  # hashed with older parameters: redo it now
        user.password_hash = hash_password(body.password)
    logins.clear_account_failures(db, body.username)
    token = logins.create_session(
        db, user, settings, user_agent=request.headers.get("user-agent"), address=address
    )
    db.commit()
    _set_cookie(response, token, settings)
    return LoginResponse(user=UserPublic.model_validate(user), access_token=token)


@router.post("/logout", status_code=204, responses=CROSS_SITE_RESPONSES)
def logout(request: Request, response: Response, db: SessionDep, settings: SettingsDep) -> None:
    """End this login session at once (its token, as cookie or bearer, stops working) and
    forget the session cookie."""
    token, by_cookie = request_token(request)
    if token:
        if by_cookie:
            check_cookie_request(request)
        logins.revoke_token(db, token)
        db.commit()
    _clear_cookie(response, settings)


@router.post("/sign-out-everywhere", response_model=SessionsRevoked)
def sign_out_everywhere(
    user: CurrentUser, response: Response, db: SessionDep, settings: SettingsDep
) -> SessionsRevoked:
    """End every session of the logged-in user, this one included (every browser and
    every bearer token of the account must log in again)."""
    revoked = logins.revoke_user_sessions(db, user.id)
    db.commit()
    _clear_cookie(response, settings)
    return SessionsRevoked(revoked=revoked)


@router.post(
    "/password",
    response_model=SessionsRevoked,
    responses={
        **THROTTLED_RESPONSES,
        403: {"model": ErrorResponse, "description": "The current password is not right."},
    },
)
def change_password(
    body: PasswordChange, user: CurrentUser, request: Request, db: SessionDep, settings: SettingsDep
) -> SessionsRevoked:
    """Change your own password. The current password is needed (a wrong one counts toward
    the account's failed-login limit). Every other session of the account ends at once;
    this one stays."""
    address = client_address(request)
    limit = logins.throttled(db, user.username, address, settings, utcnow())
    if limit is not None:
        raise HTTPException(
            429, detail=limit.sentence, headers={"Retry-After": str(limit.retry_after_s)}
        )
    problem = password_problem(body.new_password, user.username)
    if problem:
        raise Invalid(problem, field="new_password")
    db.commit()  # no transaction is held while argon2 runs
    if not verify_password(user.password_hash, body.current_password):
        logins.record_failure(db, user.username, address, settings, utcnow())
        db.commit()
        raise HTTPException(
            403, detail="The current password is not right; the password was not changed."
        )
    user.password_hash = hash_password(body.new_password)
    revoked = logins.revoke_user_sessions(db, user.id, keep_token=request_token(request)[0])
    db.commit()
    return SessionsRevoked(revoked=revoked)


@router.get("/me", response_model=UserPublic)
def me(user: CurrentUser) -> User:
    """The logged-in user."""
    return user


ROUTERS = [router]
