from fastapi import APIRouter, HTTPException
from sqlalchemy import func, select

from backend.core.security import hash_password
from backend.deps import AdminUser, PathId, SessionDep
from backend.models import User
from backend.schemas.users import UserCreate, UserPublic, UsersPublic, UserUpdate

router = APIRouter(prefix="/users", tags=["users"])


@router.get("", response_model=UsersPublic)
def list_users(_: AdminUser, db: SessionDep) -> UsersPublic:
    """All accounts."""
    users = db.scalars(select(User).order_by(User.id)).all()
    return UsersPublic(data=[UserPublic.model_validate(u) for u in users], count=len(users))


@router.post("", response_model=UserPublic, status_code=201)
def create_user(body: UserCreate, _: AdminUser, db: SessionDep) -> User:
    """Create an account with a role."""
    if db.scalar(select(User.id).where(User.username == body.username)) is not None:
        raise HTTPException(409, detail="That username is taken.")
    user = User(username=body.username, password_hash=hash_password(body.password), role=body.role)
    db.add(user)
    db.commit()
    return user


@router.patch("/{user_id}", response_model=UserPublic)
def update_user(user_id: PathId, body: UserUpdate, admin: AdminUser, db: SessionDep) -> User:
    """Change an account's role, password or whether it may log in."""
    user = db.get(User, user_id)
    if user is None:
        raise HTTPException(404, detail="User not found.")
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
    if body.password is not None:
        user.password_hash = hash_password(body.password)
    db.commit()
    return user


ROUTERS = [router]
