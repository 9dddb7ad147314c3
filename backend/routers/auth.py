from fastapi import APIRouter, HTTPException, Response
from sqlalchemy import select

from backend.core.security import SESSION_COOKIE, make_session_token, verify_password
from backend.deps import CurrentUser, SessionDep, SettingsDep
from backend.models import User
from backend.schemas.users import LoginRequest, LoginResponse, UserPublic

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/login", response_model=LoginResponse)
def login(
    body: LoginRequest, response: Response, db: SessionDep, settings: SettingsDep
) -> LoginResponse:
    """Log in with a username and password; sets the session cookie and returns a bearer token."""
    user = db.scalar(select(User).where(User.username == body.username))
    if user is None or not user.is_active or not verify_password(user.password_hash, body.password):
        raise HTTPException(401, detail="Incorrect username or password.")
    token = make_session_token(user.id, user.password_hash)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=settings.session_max_age_s,
        httponly=True,
        samesite="lax",
        secure=settings.cookie_secure,
    )
    return LoginResponse(user=UserPublic.model_validate(user), access_token=token)


@router.post("/logout", status_code=204)
def logout(response: Response) -> None:
    """Forget the session cookie."""
    response.delete_cookie(SESSION_COOKIE)


@router.get("/me", response_model=UserPublic)
def me(user: CurrentUser) -> User:
    """The logged-in user."""
    return user


ROUTERS = [router]
