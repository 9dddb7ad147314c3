"""The FastAPI application: the JSON API under /api and the frontend at /."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from starlette.requests import ClientDisconnect

from backend.core import openapi
from backend.core.config import ROOT, get_settings
from backend.core.errors import (
    Conflict,
    DomainError,
    Invalid,
    NotFound,
    TooLarge,
    Unavailable,
    Unreadable,
)
from backend.middleware import (
    RETRY_AFTER_S,
    BodyBeforeRoute,
    JSONTooLarge,
    LoginBeforeBody,
    SecurityHeaders,
    database_unavailable,
)
from backend.routers import (
    annotate,
    annotation_masks,
    auth,
    consensus,
    datasets,
    inequality,
    label_studies,
    mask_exchange,
    mask_sets,
    participate,
    reviews,
    runs,
    studies,
    sweeps,
    users,
    work_queue,
)

FRONTEND_DIR = ROOT / "frontend"
_logger = logging.getLogger(__name__)


# Every router module, listed here once: each names its JSON routers (mounted under /api) in
# ROUTERS and its page routers (mounted at the root, e.g. a participant's link) in
# PAGE_ROUTERS. A new module is added to this tuple (docs/architecture.md).
ROUTER_MODULES = (
    annotate,
    annotation_masks,
    consensus,
    auth,
    datasets,
    inequality,
    label_studies,
    mask_exchange,
    mask_sets,
    participate,
    reviews,
    runs,
    studies,
    sweeps,
    users,
    work_queue,
)


def listed_routers(attribute: str = "ROUTERS") -> list[APIRouter]:
    """The routers of ROUTER_MODULES under `attribute` (ROUTERS or PAGE_ROUTERS)."""
    return [r for module in ROUTER_MODULES for r in getattr(module, attribute, [])]


# The one place a domain error (backend/core/errors.py) becomes an HTTP status.
STATUS_OF: dict[type[DomainError], int] = {
    Unreadable: 400,
    NotFound: 404,
    Conflict: 409,
    TooLarge: 413,
    Invalid: 422,
    Unavailable: 503,
}


def http_status(exc: DomainError) -> int:
    """The status code answering `exc`: that of its nearest class in STATUS_OF."""
    for cls in type(exc).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return 400


def _field_name(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "form")]
    return ".".join(parts) or "request"


def _validation_sentence(errors: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for err in errors:
        msg = str(err.get("msg", "is invalid")).removeprefix("Value error, ")
        parts.append(f"{_field_name(tuple(err.get('loc', ())))}: {msg}")
    return "Invalid input — " + "; ".join(parts) + "."


def create_app() -> FastAPI:
    settings = get_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = FastAPI(title="SIP-AT studio", version="0.1.0")

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": _field_name(tuple(e.get("loc", ()))), "message": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        return JSONResponse(
            status_code=422,
            content={"detail": _validation_sentence(list(exc.errors())), "errors": errors},
        )

    @app.exception_handler(DomainError)
    async def _domain_error(_: Request, exc: DomainError) -> JSONResponse:
        content: dict[str, str | list[dict[str, str]]] = {"detail": exc.detail}
        if exc.errors:
            content["errors"] = exc.errors
        status = http_status(exc)
        headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
        return JSONResponse(status_code=status, content=content, headers=headers)

    @app.exception_handler(UnicodeEncodeError)
    async def _unencodable_text(_: Request, exc: UnicodeEncodeError) -> JSONResponse:
        # e.g. a lone surrogate ("\ud800") in a JSON string: valid JSON, not storable text
        return JSONResponse(
            status_code=422,
            content={
                "detail": "Invalid input — the text holds characters that are not valid "
                f"Unicode ({exc.reason}); nothing was stored."
            },
        )

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    @app.exception_handler(SQLAlchemyTimeoutError)
    async def _database_down(_: Request, exc: Exception) -> JSONResponse:
        # a restart, a refused or dropped connection, an exhausted pool: try again soon
        return database_unavailable(exc)

    @app.exception_handler(ClientDisconnect)
    async def _client_gone(_: Request, __: ClientDisconnect) -> Response:
        # the client hung up mid-body (its one log line is BodyBeforeRoute's): nobody is
        # left to read an answer, and it is not the server's fault
        return Response(status_code=400)

    @app.exception_handler(DataError)
    async def _unstorable_value(_: Request, exc: DataError) -> JSONResponse:
        # what PostgreSQL refuses to store: a NUL character in text, a number out of range
        _logger.info("refused by the database: %s", exc.orig)
        return JSONResponse(
            status_code=422,
            content={
                "detail": "Invalid input — a value cannot be stored (a NUL character in text, "
                "or a number out of range); nothing was stored."
            },
        )

    # Request bodies are capped while they stream in: JSON routes at max_json_body_bytes,
    # uploads and mask saves at their own limits (set on their routes, which win).
    for router in listed_routers("ROUTERS"):
        app.include_router(router, prefix="/api", max_body_size=settings.max_json_body_bytes)
    for router in listed_routers("PAGE_ROUTERS"):
        app.include_router(router)

    openapi.install(app)
    app.add_middleware(LoginBeforeBody)
    app.add_middleware(BodyBeforeRoute)  # runs before LoginBeforeBody (added later: outer)
    app.add_middleware(JSONTooLarge)
    app.add_middleware(SecurityHeaders)  # outermost: on every answer, the 413s included

    @app.get("/api/health", tags=["meta"])
    def health() -> dict[str, Any]:
        """Liveness check."""
        return {"status": "ok", "environment": settings.environment}

    if FRONTEND_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=FRONTEND_DIR), name="static")

        @app.get("/", include_in_schema=False)
        def index() -> FileResponse:
            return FileResponse(
                Path(FRONTEND_DIR) / "index.html", headers={"Cache-Control": "no-cache"}
            )

    return app


app = create_app()
