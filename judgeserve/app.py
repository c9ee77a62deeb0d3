"""The application: one FastAPI app composing the JSON API (``api/``) and the web view
(``web/``), as starlette composes apps.

``api/`` and ``web/`` never import each other: both read through :mod:`judgeserve.read`
and authenticate through :mod:`judgeserve.auth`, and this factory puts them side by side.
It also owns what applies to every route: the clients built once per process (store,
stream, producer), the one place where judgeserve's exceptions become HTTP responses,
the cap on request bodies, and the guards of :mod:`judgeserve.auth` that run before any
route (Host allow-list, Origin check) plus the local token made at first start.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import __version__, api, web
from .auth import OriginCheck, TokenCache, allowed_hosts, ensure_local_token
from .exceptions import Backpressure, QueueError, StoreError, StoreUnavailable
from .judge.rubric import RubricCatalog
from .local_token import is_loopback, token_path
from .settings import Settings, get_settings
from .store import Store
from .stream import AsyncProducer, Queue
from .telemetry import Telemetry

__all__ = ["create_app", "BodySizeLimit"]

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None, *, store: Store | None = None, queue: Queue | None = None
) -> FastAPI:
    """Build the app; ``store`` and ``queue`` may be shared with an in-process worker
    (``judgeserve up``), else they are built from ``settings`` when the app starts."""
    settings = settings or get_settings()
    # Request counts go to Redis, where /metrics of any API process reads them.
    telemetry = Telemetry.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.store = store or Store.from_settings(settings)
        app.state.queue = queue or Queue.from_settings(settings, create_group=False)
        app.state.producer = AsyncProducer.from_settings(settings)
        app.state.backlog = api.BacklogGauge(app.state.producer, settings.max_backlog)
        app.state.telemetry = telemetry
        app.state.metrics_registry = api.registry_for(app.state.queue.redis, app.state.queue.keys)
        app.state.auth = settings.auth == "on"
        app.state.tokens = TokenCache()
        app.state.rubrics = RubricCatalog([settings.rubric_dir])
        _announce_auth(settings, app.state.store)
        _announce_indexes(settings)
        _warn_durability(app.state.queue)
        try:
            yield
        finally:
            telemetry.close()
            await app.state.producer.close()
            if queue is None:
                app.state.queue.close()
            if store is None:
                app.state.store.close()

    app = FastAPI(
        title="judgeserve",
        version=__version__,
        description="Evaluate fine-tuning runs beside the training loop.",
        lifespan=lifespan,
    )
    _install_errors(app)
    app.include_router(api.router)
    for router in web.routers:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=web.STATIC_DIR), name="static")
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(OriginCheck, allowed=settings.allowed_origins)
    # Added after the other guards, so it runs before them: a request for a name this API
    # does not serve (a DNS rebinding page) is turned away before anything else looks at it.
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(settings))
    # Outermost: every answer is counted, the guards' refusals too.
    app.add_middleware(api.RequestMetrics, telemetry=telemetry)
    return app


def _announce_indexes(settings: Settings) -> None:
    """Which runs have a memorization index, and where: built in another folder, an
    index would otherwise go unused without a word."""
    from .detectors.memorization import describe_indexes

    log.info(describe_indexes(settings.index_dir))


def _announce_auth(settings: Settings, store: Store) -> None:
    """With auth on, make the local token if there is none and show it this once."""
    if settings.auth == "off":
        if not is_loopback(settings.host):
            log.warning(
                "auth is off and the API listens on %s: anyone who can reach it reads every "
                "prompt and can resolve alerts (JUDGESERVE_AUTH=on)", settings.host,
            )
        return
    path = token_path(settings.data_dir)
    try:
        created = ensure_local_token(store, settings.data_dir)
    except OSError as e:
        log.warning("auth is on; no local token (%s cannot be written: %s): make tokens with "
                    "`judgeserve token create`", path, e)
        return
    if created is None:
        log.info("auth is on; local clients use the token in %s", path)
        return
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    host = f"[{host}]" if ":" in host else host
    print(
        f"\njudgeserve: auth is on. The token for local use (project 'local'), shown this once:\n\n"
        f"    {created}\n\n"
        f"It is saved in {path} (mode 0600): the SDK and CLI on this machine read it there.\n"
        f"To use the web view, log in at http://{host}:{settings.port}/login with it.\n",
        flush=True,
    )


def _warn_durability(queue: Queue) -> None:
    try:
        for warning in queue.durability_warnings():
            log.warning(warning)
    except QueueError as e:
        log.warning("%s (the API answers 503 until it is back)", e)


# -- errors → HTTP, in exactly one place ---------------------------------------------------


def _encodable(x: Any) -> Any:
    # A location may hold a dict key the client sent: a lone surrogate in it must not make
    # the error response itself fail to encode.
    if isinstance(x, str):
        return x.encode("utf-8", "backslashreplace").decode("utf-8")
    return x


def _safe_error(e: dict[str, Any]) -> dict[str, Any]:
    # The rejected input is not echoed: it may be 64 KiB of text, or a float JSON can't encode.
    out: dict[str, Any] = {
        "loc": [_encodable(x) for x in e.get("loc", ())],
        "msg": _encodable(str(e.get("msg"))),
        "type": e.get("type"),
    }
    return out


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": [_safe_error(e) for e in exc.errors()]}, status_code=422)

    @app.exception_handler(QueueError)
    async def _queue(_req: Request, exc: QueueError) -> JSONResponse:
        # Nothing was accepted: the SDK keeps the batch and retries.
        return JSONResponse(
            {"detail": f"queue unavailable: {exc}"}, status_code=503, headers={"Retry-After": "2"}
        )

    @app.exception_handler(StoreError)
    async def _store(_req: Request, exc: StoreError) -> JSONResponse:
        if isinstance(exc, StoreUnavailable):
            # Nothing was written: the client may send the same request again later.
            return JSONResponse(
                {"detail": f"store unavailable: {_encodable(str(exc))}"},
                status_code=503,
                headers={"Retry-After": "2"},
            )
        # The database refused this data: sending it again would be refused again.
        detail = f"the store refused this request: {_encodable(str(exc))}"
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(Backpressure)
    async def _backpressure(_req: Request, exc: Backpressure) -> JSONResponse:
        return JSONResponse(
            {"detail": f"too many samples waiting to be scored ({exc})"},
            status_code=429,
            headers={"Retry-After": str(exc.retry_after)},
        )


# -- the body cap ---------------------------------------------------------------------------


class _BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    """Answers 413 when a body is over ``max_bytes``, by header or while streaming it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    await self._reject(send)
                    return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge()
            return msg

        async def tracking_send(msg: Message) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await self._reject(send)

    async def _reject(self, send: Send) -> None:
        body = f'{{"detail":"request body exceeds {self.max_bytes} bytes"}}'.encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})
