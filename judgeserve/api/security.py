"""Who may call: the token check every route (API and web view) goes through."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request

from ..auth import ANYONE, COOKIE, Principal, claim_run, run_owner, verify
from ..schema import RUN_NAME_PATTERN
from ..store import Store

CACHE_S = 30.0  # a revoked token stops working within this long


class TokenCache:
    """Verified tokens and run owners, so a hot submit path costs no database query."""

    def __init__(self) -> None:
        self.tokens: dict[str, tuple[Principal, float]] = {}
        self.owners: dict[str, str | None] = {}

    def principal(self, store: Store, token: str) -> Principal | None:
        hit = self.tokens.get(token)
        now = time.monotonic()
        if hit and hit[1] > now:
            return hit[0]
        found = verify(store, token)
        if found is not None:
            self.tokens[token] = (found, now + CACHE_S)
        return found


def _token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get(COOKIE)


def principal(request: Request) -> Principal:
    """The caller's project; everyone when auth is off. 401 without a valid token."""
    if not request.app.state.auth:
        return ANYONE
    token = _token(request)
    if not token:
        raise HTTPException(401, "an API token is required", {"WWW-Authenticate": "Bearer"})
    cache: TokenCache = request.app.state.tokens
    found = cache.principal(request.app.state.store, token)
    if found is None:
        raise HTTPException(401, "invalid or revoked API token", {"WWW-Authenticate": "Bearer"})
    return found


Caller = Annotated[Principal, Depends(principal)]
RunPath = Annotated[str, Path(pattern=RUN_NAME_PATTERN, description="Run name.")]


def check_run(request: Request, who: Principal, run: str, *, write: bool) -> None:
    if who.project is None:
        return
    cache: TokenCache = request.app.state.tokens
    store: Store = request.app.state.store
    if run not in cache.owners:
        exists, owner = run_owner(store, run)
        if not exists and not write:
            return  # the route answers 404 itself
        if not exists:
            owner = claim_run(store, run, who.project)
        cache.owners[run] = owner
    if cache.owners[run] != who.project:
        raise HTTPException(403, f"run {run!r} belongs to another project")


def readable_run(run: RunPath, request: Request, who: Caller) -> str:
    check_run(request, who, run, write=False)
    return run


def writable_run(run: RunPath, request: Request, who: Caller) -> str:
    check_run(request, who, run, write=True)
    return run


ReadRun = Annotated[str, Depends(readable_run)]
WriteRun = Annotated[str, Depends(writable_run)]
