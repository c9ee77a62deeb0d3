"""The one place where judgeserve's exceptions become HTTP responses."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from ..exceptions import QueueError, StoreError


class Backpressure(Exception):
    """The stream's backlog is over its bound: the client should retry later."""

    def __init__(self, backlog: int, bound: int, retry_after: int = 2) -> None:
        super().__init__(f"backlog {backlog} exceeds {bound}")
        self.backlog = backlog
        self.bound = bound
        self.retry_after = retry_after


def _safe_error(e: dict[str, Any]) -> dict[str, Any]:
    # The rejected input is not echoed: it may be 64 KiB of text, or a float JSON can't encode.
    out: dict[str, Any] = {"loc": list(e.get("loc", ())), "msg": str(e.get("msg")), "type": e.get("type")}
    return out


def install(app: FastAPI) -> None:
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
        return JSONResponse({"detail": f"store unavailable: {exc}"}, status_code=503)

    @app.exception_handler(Backpressure)
    async def _backpressure(_req: Request, exc: Backpressure) -> JSONResponse:
        return JSONResponse(
            {"detail": f"too many samples waiting to be scored ({exc})"},
            status_code=429,
            headers={"Retry-After": str(exc.retry_after)},
        )
