"""The app's ASGI middleware.

Request bodies are capped while they stream in (FastAPI's max_body_size: the JSON limit on
every router, the upload and mask-save routes' own). Starlette answers an over-long body
with a plain-text 413; `JSONTooLarge` rewrites it into the API's one error shape.
`BodyBeforeRoute` judges a body before its route runs: a declared length over the route's
limit is answered 413 at once, and a route that takes no body has whatever body came read
(up to the JSON limit) before it runs, so that an over-long one never follows the action it
came with; it also answers 405 with every method of the path. `LoginBeforeBody` answers an
upload from a stranger (401) or from a role that may not import (403) before its body is
read. `SecurityHeaders` puts the Content-Security-Policy and its companions on every
response."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from re import Pattern

from fastapi import FastAPI, HTTPException
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.core.config import get_settings
from backend.db import get_sessionmaker
from backend.deps import ensure_role, get_current_user

_logger = logging.getLogger(__name__)

# What SQLAlchemy raises while the database cannot be reached (refused, restarting, a
# dropped connection, no connection free in the pool): answered 503 with Retry-After.
DATABASE_DOWN = (OperationalError, InterfaceError, SQLAlchemyTimeoutError)
DATABASE_DOWN_SENTENCE = "The database cannot be reached at the moment; try again in a few seconds."
RETRY_AFTER_S = 5


def database_unavailable(exc: Exception) -> JSONResponse:
    """The 503 answering a request that found the database unreachable; one log line."""
    _logger.warning("database unreachable: %s", str(exc).splitlines()[0] if str(exc) else exc)
    return JSONResponse(
        {"detail": DATABASE_DOWN_SENTENCE},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


TOO_LARGE_SENTENCE = "The request body is larger than the allowed size."
TOO_LARGE = json.dumps({"detail": TOO_LARGE_SENTENCE}).encode()


class JSONTooLarge:
    """ASGI middleware: a plain-text 413 becomes {"detail": "..."} as JSON."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rewriting = False

        async def send_json(message: Message) -> None:
            nonlocal rewriting
            if message["type"] == "http.response.start" and message["status"] == 413:
                headers = dict(message.get("headers", []))
                if headers.get(b"content-type", b"").startswith(b"text/plain"):
                    rewriting = True
                    message = {
                        "type": "http.response.start",
                        "status": 413,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(TOO_LARGE)).encode()),
                            (b"connection", b"close"),
                        ],
                    }
            elif message["type"] == "http.response.body" and rewriting:
                if message.get("more_body", False):
                    return  # the plain text's remaining chunks are dropped
                message = {"type": "http.response.body", "body": TOO_LARGE}
            await send(message)

        await self.app(scope, receive, send_json)


@dataclass(frozen=True)
class RouteBody:
    """What one route takes: its path, methods, body limit and whether it reads a body."""

    path_regex: Pattern[str]
    methods: frozenset[str] | None  # None: any (a mount)
    limit: int
    takes_body: bool


def route_bodies(app: FastAPI, default_limit: int) -> list[RouteBody]:
    """Every route of the app in routing order, with its body limit (its own max_body_size,
    else `default_limit`) and whether it declares a body (body parameters, or a body it
    reads itself, documented in its openapi_extra)."""
    table = []
    for route in iter_route_contexts(app.routes):
        regex = getattr(route, "path_regex", None)
        if regex is None:
            continue
        methods = getattr(route, "methods", None)
        takes_body = False
        if isinstance(route.original_route, APIRoute):
            takes_body = bool(route.dependant.body_params) or "requestBody" in (
                route.openapi_extra or {}
            )
        limit = getattr(route, "max_body_size", None)
        table.append(
            RouteBody(
                regex,
                frozenset(methods) if methods else None,
                limit if limit is not None else default_limit,
                takes_body,
            )
        )
    return table


def _json(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


class BodyBeforeRoute:
    """ASGI middleware: a request's body is held to its route's limit before the route runs.

    - A Content-Length over the limit is answered 413 before anything runs or is read.
    - On a route that takes no body (logout, consent, open, close, cancel...), a body that
      came anyway (declared or chunked) is read first, up to the JSON limit, and the route
      runs only if it fits: an over-long body can no longer get a 413 after the action.
    - A path whose routes take other methods is answered 405 with all of them in Allow.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._table: list[RouteBody] | None = None

    def _routes(self, scope: Scope) -> list[RouteBody]:
        if self._table is None:
            self._table = route_bodies(scope["app"], get_settings().max_json_body_bytes)
        return self._table

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not isinstance(scope.get("app"), FastAPI):
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        receive = _noting_hang_up(receive, method, path)
        on_path = [r for r in self._routes(scope) if r.path_regex.match(path)]
        route = next((r for r in on_path if r.methods is None or method in r.methods), None)
        if route is None:
            if on_path:
                allowed = sorted(set().union(*(r.methods or () for r in on_path)))
                response = _json(
                    405,
                    f"This address does not take {method}; it takes {', '.join(allowed)}.",
                    {"Allow": ", ".join(allowed)},
                )
                await response(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > route.limit:
            await _json(413, TOO_LARGE_SENTENCE, {"Connection": "close"})(scope, receive, send)
            return
        has_body = (length is not None and length != b"0") or b"chunked" in headers.get(
            b"transfer-encoding", b""
        ).lower()
        if route.takes_body or not has_body:
            await self.app(scope, receive, send)
            return
        body = await _read_at_most(receive, min(route.limit, get_settings().max_json_body_bytes))
        if body is None:  # the client hung up while sending it (logged as it did)
            return
        if isinstance(body, int):
            await _json(413, TOO_LARGE_SENTENCE, {"Connection": "close"})(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)


async def _read_at_most(receive: Receive, limit: int) -> bytes | int | None:
    """The request's body, or the count of bytes read when they passed `limit` (then the
    rest is never read), or None when the client disconnected."""
    chunks, total = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > limit:
            return total
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _noting_hang_up(receive: Receive, method: str, path: str) -> Receive:
    """A receive that logs one line (no traceback: a client going away is not the server's
    fault) when the client disconnects before its body has ended; the route then stops where
    it reads (Starlette's ClientDisconnect, answered quietly by backend/main.py)."""
    body_ended = False

    async def noting() -> Message:
        nonlocal body_ended
        message = await receive()
        if message["type"] == "http.request" and not message.get("more_body", False):
            body_ended = True
        elif message["type"] == "http.disconnect" and not body_ended:
            body_ended = True  # said once
            _logger.info("%s %s: the client hung up while sending its body", method, path)
        return message

    return noting


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the route the body already read, then waits as the server's does
    (for the client's disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


# Uploads whose bodies FastAPI would read (and spool) before the route's login dependency,
# and the roles that may send them.
UPLOAD_PATHS = re.compile(r"^/api/datasets/(import|\d+/masks/import)$")
UPLOAD_ROLES = ("researcher", "admin")


class LoginBeforeBody:
    """ASGI middleware: an upload from a caller who is not logged in (401), or whose role may
    not import (403), is answered before a byte of its body is read (otherwise a stranger's,
    or an annotator's, 500 MB upload is spooled to temporary files first)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and UPLOAD_PATHS.match(scope["path"])
        ):
            request = Request(scope)
            try:
                await run_in_threadpool(_check_login, request)
            except HTTPException as exc:
                response = JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
                response.headers["connection"] = "close"
                await response(scope, receive, send)
                return
            except DATABASE_DOWN as exc:
                response = database_unavailable(exc)
                response.headers["connection"] = "close"
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _check_login(request: Request) -> None:
    with get_sessionmaker()() as db:
        ensure_role(get_current_user(request, db), UPLOAD_ROLES)


# Scripts only from this origin (no inline script, no eval); inline styles are allowed (the
# components set style attributes); images also from data: and blob: (masks are drawn and
# read back as PNG data); no plugin, no other site's frame around any page, forms and <base>
# to this origin only.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]


class SecurityHeaders:
    """ASGI middleware: every response carries SECURITY_HEADERS (a route that sets one of
    them keeps its own)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(n, v) for n, v in SECURITY_HEADERS if n not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)
