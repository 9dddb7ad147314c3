from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator
from pydantic.config import JsonDict

from backend.core.security import MIN_PASSWORD_LENGTH, password_problem
from backend.schemas.common import ORMModel

Role = Literal["admin", "researcher", "annotator"]


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class UserPublic(ORMModel):
    id: int
    username: str
    role: Role
    is_active: bool
    created_at: datetime


class UsersPublic(BaseModel):
    data: list[UserPublic]
    count: int


class LoginResponse(BaseModel):
    user: UserPublic
    access_token: str


# A new password: the policy (backend/core/security.py, password_problem) is checked by
# the validators below, whose messages name the rule; minLength is stated for the OpenAPI
# document.
_MIN_LENGTH: JsonDict = {"minLength": MIN_PASSWORD_LENGTH}


class UserCreate(BaseModel):
    username: str = Field(min_length=2, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    password: str = Field(max_length=256, json_schema_extra=_MIN_LENGTH)
    role: Role

    @field_validator("password")
    @classmethod
    def _password_policy(cls, value: str, info: ValidationInfo) -> str:
        problem = password_problem(value, info.data.get("username"))
        if problem:
            raise ValueError(problem.rstrip("."))  # the 422's sentence adds it
        return value


class UserUpdate(BaseModel):
    role: Role | None = None
    is_active: bool | None = None
    # the rule against containing the username is checked by the route, which knows it
    password: str | None = Field(default=None, max_length=256, json_schema_extra=_MIN_LENGTH)

    @field_validator("password")
    @classmethod
    def _password_policy(cls, value: str | None) -> str | None:
        problem = None if value is None else password_problem(value)
        if problem:
            raise ValueError(problem.rstrip("."))  # the 422's sentence adds it
        return value


class PasswordChange(BaseModel):
    """A user changing their own password: the current one proves it is them."""

    current_password: str = Field(min_length=1, max_length=256)
    # the rule against containing the username is checked by the route, which knows it
    new_password: str = Field(max_length=256, json_schema_extra=_MIN_LENGTH)

    @field_validator("new_password")
    @classmethod
    def _password_policy(cls, value: str) -> str:
        problem = password_problem(value)
        if problem:
            raise ValueError(problem.rstrip("."))  # the 422's sentence adds it
        return value


class SessionsRevoked(BaseModel):
    """How many live login sessions an action ended."""

    revoked: int
