"""Authentication, in one place for the JSON API and the web view.

A token reads ``js_<id>_<secret>``. The id finds the row; the secret's SHA-256 is compared
with ``hmac.compare_digest``. Secrets are 256 random bits, so a fast hash is enough (no
password stretching needed). A token belongs to one project and reaches only that
project's runs: a run is owned by the project whose token first wrote to it.

* tokens: :func:`create_token`, :func:`revoke_token`, :func:`list_tokens`, :func:`verify`
  (through the store's writes and :mod:`judgeserve.read`);
* :class:`TokenCache`: verified tokens and run owners, so a hot submit path costs no query;
* :func:`principal` and :func:`check_run`, and the FastAPI dependencies built on them
  (``Caller``, ``ReadRun``, ``WriteRun``) that api/ routes and web/ pages both use.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Request

from . import read
from .schema import RUN_NAME_PATTERN
from .store import Store

__all__ = [
    "Principal",
    "ANYONE",
    "COOKIE",
    "CACHE_S",
    "create_token",
    "revoke_token",
    "list_tokens",
    "verify",
    "auth_enabled",
    "TokenCache",
    "principal",
    "check_run",
    "may_read",
    "Caller",
    "RunPath",
    "ReadRun",
    "WriteRun",
]

COOKIE = "judgeserve_token"
CACHE_S = 30.0  # a revoked token stops working within this long


@dataclass(frozen=True)
class Principal:
    """Who is calling: a project, or everyone when auth is off (``project is None``)."""

    project: str | None

    def may_access(self, owner: str | None) -> bool:
        return self.project is None or owner == self.project


ANYONE = Principal(project=None)


# -- tokens -------------------------------------------------------------------------------


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(store: Store, project: str, name: str = "") -> str:
    """Make a token for ``project``; the returned string is shown once and never stored."""
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    store.add_token(token_id, project, name, _hash(secret))
    return f"js_{token_id}_{secret}"


def revoke_token(store: Store, token_id: str) -> bool:
    return store.revoke_token(token_id)


def list_tokens(store: Store) -> list[dict[str, Any]]:
    return read.list_tokens(store)


def verify(store: Store, token: str) -> Principal | None:
    """The token's project, or None when the token is unknown, revoked or wrong."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != "js":
        return None
    _, token_id, secret = parts
    found = read.token(store, token_id)
    # Compare even when the id is unknown, so timing does not tell ids apart.
    expected = found[1] if found else "0" * 64
    if not hmac.compare_digest(_hash(secret), expected) or found is None:
        return None
    return Principal(project=found[0])


def auth_enabled(mode: str, host: str) -> bool:
    """``auto`` turns auth on whenever the API listens beyond loopback."""
    if mode != "auto":
        return mode == "on"
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a host name may resolve anywhere: be safe


# -- per request --------------------------------------------------------------------------


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


def check_run(request: Request, who: Principal, run: str, *, write: bool) -> None:
    """403 unless ``who`` may read (or write) ``run``; writing to a new run claims it."""
    if who.project is None:
        return
    cache: TokenCache = request.app.state.tokens
    store: Store = request.app.state.store
    if run not in cache.owners:
        found = read.get_run(store, run)
        if found is None and not write:
            return  # the route answers 404 itself
        owner = found["project"] if found else store.claim_run(run, who.project)
        cache.owners[run] = owner
    if cache.owners[run] != who.project:
        raise HTTPException(403, f"run {run!r} belongs to another project")


def may_read(request: Request, who: Principal, run: str) -> bool:
    """Whether ``who`` may see ``run`` (lists leave out what :func:`check_run` refuses)."""
    try:
        check_run(request, who, run, write=False)
    except HTTPException:
        return False
    return True


Caller = Annotated[Principal, Depends(principal)]
RunPath = Annotated[str, Path(pattern=RUN_NAME_PATTERN, description="Run name.")]


def _readable_run(run: RunPath, request: Request, who: Caller) -> str:
    check_run(request, who, run, write=False)
    return run


def _writable_run(run: RunPath, request: Request, who: Caller) -> str:
    check_run(request, who, run, write=True)
    return run


ReadRun = Annotated[str, Depends(_readable_run)]
WriteRun = Annotated[str, Depends(_writable_run)]
