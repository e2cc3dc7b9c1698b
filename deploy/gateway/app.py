"""The gateway's HTTP surface (FastAPI): routes, auth headers, error bodies, body limit, chat page.

Every error is ``{"detail": "<one line>", "field": "<field or null>"}`` with its status: 401
(missing/bad API key or user token, with ``WWW-Authenticate: Bearer``), 403, 404, 413 (body
over ``gateway.max_body_bytes``, checked before anything is parsed), 422 (schema: the field
path is named), 429 (with Retry-After), 503 (Kafka or the policy unavailable). Rules live in
`deploy.gateway.service.Gateway`; this module only translates.
"""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from importlib import resources
from typing import Annotated, Any

import anyio.to_thread
from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deploy.gateway.api_models import (
    ChatReply,
    ChatRequest,
    ErrorBody,
    ReactionAccepted,
    ReactionRequest,
    TokenReply,
    TokenRequest,
)
from deploy.gateway.kafka_publisher import PublishError
from deploy.gateway.service import Gateway
from rluf.errors import GatewayRequestError, RlufError

__all__ = ["create_app", "BodyLimit"]

logger = logging.getLogger(__name__)

_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (401, 403, 404, 413, 422, 429, 503)
}


def _error(status: int, detail: str, field: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail, "field": field}, status_code=status, headers=headers)


class BodyLimit:
    """ASGI middleware: refuse request bodies over `max_bytes` with 413 before the app reads them.

    A declared Content-Length over the limit is refused at once; a body without one (chunked)
    is read up to the limit and refused as soon as it goes over, so a client cannot make the
    gateway buffer more than `max_bytes`.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self._app = app
        self._max = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self._app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max:
            await self._too_large(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self._app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = _error(413, f"body: larger than the limit of {self._max} bytes (gateway.max_body_bytes)",
                          "body", headers={"Connection": "close"})
        await response(scope, receive, send)


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] == "body":
        parts = parts[1:]
    return ".".join(parts) or "body"


def create_app(gateway: Gateway, *, max_body_bytes: int, dev_mode: bool,
               warm_up: Callable[[], Awaitable[None]] | None = None,
               close: Callable[[], Awaitable[None]] | None = None, warm_retry_s: float = 2.0) -> FastAPI:
    """Build the FastAPI app around `gateway`.

    Args:
        gateway: The rules and collaborators.
        max_body_bytes: Larger request bodies get 413.
        dev_mode: Serve the chat page with a page session token (local demos only).
        warm_up: Runs in the background after start (connect Kafka, load the policies), again
            every `warm_retry_s` seconds until it succeeds; the gateway serves /healthz at once
            and /readyz once it succeeded.
        close: Runs at shutdown (disconnect Kafka).
        warm_retry_s: Seconds between warm-up attempts.
    """
    state: dict[str, Any] = {"ready": warm_up is None, "warm_up_error": None}

    async def _warm() -> None:
        assert warm_up is not None
        while not state["ready"]:
            try:
                await warm_up()
                state["ready"], state["warm_up_error"] = True, None
            except (RlufError, PublishError, OSError) as exc:
                if str(exc) != state["warm_up_error"]:  # log each new reason once, not every retry
                    logger.warning("gateway not ready yet (retrying every %g s): %s", warm_retry_s, exc)
                state["warm_up_error"] = str(exc)
                await asyncio.sleep(warm_retry_s)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_warm()) if warm_up is not None else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
            if close is not None:
                await close()

    app = FastAPI(title="rluf gateway", version="1", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)

    @app.exception_handler(GatewayRequestError)
    async def _gateway_error(_: Request, exc: GatewayRequestError) -> JSONResponse:
        headers: dict[str, str] = {}
        if exc.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        if exc.retry_after_s is not None:
            headers["Retry-After"] = str(exc.retry_after_s)
        return _error(exc.status, exc.detail, exc.field, headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0]
        field = _field(tuple(err.get("loc", ())))
        kind = err.get("type", "")
        if kind == "json_invalid":
            field, message = "body", "body: not valid JSON"
        elif kind == "missing":
            message = f"{field}: field required"
        elif kind == "extra_forbidden":
            message = f"{field}: unknown field" + (" (the user comes from the X-RLUF-User token)"
                                                    if field.endswith("user_id") else "")
        else:
            message = f"{field}: {err.get('msg', 'invalid')}".replace("Value error, ", "")
        return _error(422, message, field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), None, dict(exc.headers or {}))

    async def app_key(authorization: Annotated[str | None, Header()] = None) -> None:
        scheme, _, value = (authorization or "").partition(" ")
        gateway.authenticate_app(value.strip() if scheme.lower() == "bearer" else None)

    async def user(x_rluf_user: Annotated[str | None, Header(alias="X-RLUF-User")] = None) -> str:
        user_id = gateway.user_of(x_rluf_user)
        gateway.take_rate(user_id)
        return user_id

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """Liveness: the process serves HTTP."""
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"model": ErrorBody}})
    async def readyz() -> JSONResponse:
        """Readiness: Kafka connected and every arm's policy loaded."""
        if state["ready"]:
            return JSONResponse({"status": "ready"})
        reason = state["warm_up_error"] or "starting"
        return _error(503, f"not ready: {reason}")

    @app.post("/v1/tokens", dependencies=[Depends(app_key)], responses=_ERRORS)
    async def tokens(body: TokenRequest) -> TokenReply:
        """A signed, expiring user token (application API key required)."""
        return gateway.issue_user_token(body.user_id)

    @app.post("/v1/chat", dependencies=[Depends(app_key)], responses=_ERRORS)
    async def chat(body: ChatRequest, user_id: str = Depends(user)) -> ChatReply:
        """The user's arm's policy answers; the response event is on Kafka before this returns."""
        return await gateway.chat(user_id, body)

    @app.post("/v1/reactions", status_code=202, dependencies=[Depends(app_key)], responses=_ERRORS)
    async def reactions(body: ReactionRequest, user_id: str = Depends(user)) -> ReactionAccepted:
        """The reaction event is on Kafka (acknowledged) before this returns 202."""
        return await gateway.react(user_id, body)

    page = resources.files("deploy.gateway") / "static" / "index.html"

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def chat_page() -> HTMLResponse:
        template = await anyio.to_thread.run_sync(page.read_text, "utf-8")
        session = gateway.issue_session_token() if dev_mode else ""
        return HTMLResponse(template.replace("{{SESSION}}", html.escape(session, quote=True)),
                            headers=_PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=str(resources.files("deploy.gateway") / "static")), name="static")
    return app
