"""What the OpenAPI document says each route may answer besides success.

Every error the API gives has one shape, `ErrorResponse` ({detail, errors}): request
validation, domain errors (backend/main.py) and the login and role checks alike. Each route
under /api documents the errors it can give: 400, 404, 409, 413, 422 and 503 (a service may
refuse for any of these reasons), and 401 and 403 when it needs a login. Schemathesis
(tests/backend/test_api_fuzz.py) holds every response to this document.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel


class FieldError(BaseModel):
    field: str
    message: str


class ErrorResponse(BaseModel):
    """A refused request: one sentence, and one message per field when fields are at fault."""

    detail: str
    errors: list[FieldError] | None = None


ANY_ROUTE = {
    400: "The input could not be read.",
    404: "Something the request names does not exist.",
    409: "The action does not apply in the current state.",
    413: "The input is over a size limit.",
    422: "A value is invalid; `errors` names the fields.",
    503: "A service the request needs cannot be reached now.",
}
LOGGED_IN = {
    401: "Not logged in, or the login has expired.",
    403: "The role may not do this.",
}


# `responses=` for a route that checks the login itself rather than through a dependency
LOGIN_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text} for code, text in LOGGED_IN.items()
}


def _needs_login(dependant: Dependant) -> bool:
    from backend.deps import get_current_user

    return any(d.call is get_current_user or _needs_login(d) for d in dependant.dependencies)


def _error_response(text: str) -> dict[str, Any]:
    return {
        "description": text,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
    }


def build_document(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document with every /api route's error responses added (FastAPI's
    own 422 schema, a list of pydantic errors, is replaced: the API answers ErrorResponse)."""
    doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    error_schema = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(error_schema.pop("$defs", {}))
    schemas["ErrorResponse"] = error_schema
    for context in iter_route_contexts(app.routes):
        route, path = context.original_route, context.path_format or ""
        if not isinstance(route, APIRoute) or not path.startswith("/api"):
            continue
        if not route.include_in_schema:
            continue
        codes = dict(ANY_ROUTE)
        if _needs_login(route.dependant) or set(LOGGED_IN) <= set(route.responses):
            codes.update(LOGGED_IN)
        elif path.startswith("/api/auth/"):
            codes[401] = "Wrong username or password."
        for method in context.methods or ():
            operation = doc["paths"][path][method.lower()]
            for code, text in codes.items():
                operation["responses"][str(code)] = _error_response(text)
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return doc


def install(app: FastAPI) -> None:
    """Serve build_document() as the app's /openapi.json (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override


def content(*media_types: str, description: str) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route whose success is not JSON: the media types it answers with."""
    return {200: {"description": description, "content": {m: {} for m in media_types}}}


PNG = content("image/png", description="A PNG image.")
