"""Logging in and out. A login is a server-side session (backend/services/logins.py): the
random token goes to the client as the session cookie and as a bearer token; the database
keeps its hash. Failed logins are throttled per account and per client address."""

from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response

from backend.core.config import Settings
from backend.core.openapi import ErrorResponse
from backend.core.security import SESSION_COOKIE, dummy_password_hash
from backend.deps import CurrentUser, SessionDep, SettingsDep, check_cookie_request, request_token
from backend.models import User
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


def _too_many(limit: logins.Throttled) -> HTTPException:
    """429 with the seconds to wait, for a login refused by the failed-login throttle."""
    return HTTPException(
        429, detail=limit.sentence, headers={"Retry-After": str(limit.retry_after_s)}
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
    result = logins.log_in(
        db,
        body.username,
        body.password,
        settings,
        address=client_address(request),
        user_agent=request.headers.get("user-agent"),
    )
    if isinstance(result, logins.Throttled):
        raise _too_many(result)
    if result is None:
        raise HTTPException(401, detail=WRONG)
    _set_cookie(response, result.token, settings)
    return LoginResponse(user=UserPublic.model_validate(result.user), access_token=result.token)


@router.post("/logout", status_code=204, responses=CROSS_SITE_RESPONSES)
def logout(request: Request, response: Response, db: SessionDep, settings: SettingsDep) -> None:
    """End this login session at once (its token, as cookie or bearer, stops working) and
    forget the session cookie."""
    token, by_cookie = request_token(request)
    if token:
        if by_cookie:
            check_cookie_request(request)
        logins.log_out(db, token)
    _clear_cookie(response, settings)


@router.post("/sign-out-everywhere", response_model=SessionsRevoked)
def sign_out_everywhere(
    user: CurrentUser, response: Response, db: SessionDep, settings: SettingsDep
) -> SessionsRevoked:
    """End every session of the logged-in user, this one included (every browser and
    every bearer token of the account must log in again)."""
    revoked = logins.sign_out_everywhere(db, user.id)
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
    result = logins.change_password(
        db,
        user,
        body.current_password,
        body.new_password,
        settings,
        address=client_address(request),
        keep_token=request_token(request)[0],
    )
    if isinstance(result, logins.Throttled):
        raise _too_many(result)
    if result is None:
        raise HTTPException(
            403, detail="The current password is not right; the password was not changed."
        )
    return SessionsRevoked(revoked=result)


@router.get("/me", response_model=UserPublic)
def me(user: CurrentUser) -> User:
    """The logged-in user."""
    return user


ROUTERS = [router]
