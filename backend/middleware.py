"""The app's ASGI middleware.

Request bodies are capped while they stream in (FastAPI's max_body_size: the JSON limit on
every router, the upload and mask-save routes' own). Starlette answers an over-long body
with a plain-text 413; `JSONTooLarge` rewrites it into the API's one error shape.
`LoginBeforeBody` answers an upload from a stranger before its body is read."""

from __future__ import annotations

import json
import re

from fastapi import HTTPException
from fastapi.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.db import get_sessionmaker
from backend.deps import get_current_user

TOO_LARGE = json.dumps({"detail": "The request body is larger than the allowed size."}).encode()


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


# Uploads whose bodies FastAPI would read (and spool) before the route's login dependency.
UPLOAD_PATHS = re.compile(r"^/api/datasets/(import|\d+/masks/import)$")


class LoginBeforeBody:
    """ASGI middleware: an upload from a caller who is not logged in is answered 401 before
    a byte of its body is read (otherwise a stranger's 500 MB upload is spooled first)."""

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
        await self.app(scope, receive, send)


def _check_login(request: Request) -> None:
    with get_sessionmaker()() as db:
        get_current_user(request, db)
