"""Authentication, in one place for the JSON API and the web view.

A token reads ``js_<id>_<secret>``. The id finds the row; the secret's SHA-256 is compared
with ``hmac.compare_digest``. Secrets are 256 random bits, so a fast hash is enough (no
password stretching needed). A token belongs to one project and reaches only that
project's runs: a run is owned by the project whose token first wrote to it.

* tokens: :func:`create_token`, :func:`revoke_token`, :func:`list_tokens`, :func:`verify`
  (through the store's writes and :mod:`judgeserve.read`), and :func:`ensure_local_token`,
  the token of project ``local`` kept in ``<data_dir>/token`` (:mod:`judgeserve.local_token`);
* what guards every request before any route runs: :func:`allowed_hosts` (the Host
  allow-list against DNS rebinding, applied by Starlette's ``TrustedHostMiddleware``) and
  :class:`OriginCheck` (state-changing requests from another site's pages are refused: CSRF);
* :class:`TokenCache`: verified tokens and run owners, so a hot submit path costs no query;
* :func:`principal` and :func:`check_run`, and the FastAPI dependencies built on them
  (``Caller``, ``ReadRun``, ``WriteRun``) that api/ routes and web/ pages both use.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import ipaddress
import logging
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path as FilePath
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Path, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from . import read
from .local_token import read_token, token_path, write_token
from .schema import RUN_NAME_PATTERN
from .settings import Settings
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
    "LOCAL_PROJECT",
    "ensure_local_token",
    "allowed_hosts",
    "OriginCheck",
    "TokenCache",
    "principal",
    "check_run",
    "may_read",
    "Caller",
    "RunPath",
    "ReadRun",
    "WriteRun",
]

log = logging.getLogger(__name__)
COOKIE = "judgeserve_token"
CACHE_S = 30.0  # a revoked token stops working within this long
LOCAL_PROJECT = "local"


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
    parts = _split(token)
    if parts is None:
        return None
    token_id, secret = parts
    found = read.token(store, token_id)
    # Compare even when the id is unknown, so timing does not tell ids apart.
    expected = found[1] if found else "0" * 64
    if not hmac.compare_digest(_hash(secret), expected) or found is None:
        return None
    return Principal(project=found[0])


def _split(token: str) -> tuple[str, str] | None:
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != "js" or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def ensure_local_token(store: Store, data_dir: FilePath) -> str | None:
    """Make sure ``<data_dir>/token`` holds a token ``store`` accepts; returns the token when
    it had to be made (for the caller to show once), None when the file's token is good.

    A token in the file that this store has never seen (another server on this machine
    made it) is registered here too, so every local server takes the one file. A revoked
    or tampered one is replaced.
    """
    path = token_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Two servers starting at once must not each write a token of their own.
    with open(path.with_name(".token.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        existing = read_token(path)
        parts = _split(existing) if existing else None
        if existing and parts:
            if verify(store, existing) is not None:
                return None
            known = {t["id"] for t in read.list_tokens(store)}
            if parts[0] not in known and len(parts[0]) <= 32 and parts[0].isalnum():
                store.add_token(parts[0], LOCAL_PROJECT, "local", _hash(parts[1]))
                return None
        token = create_token(store, LOCAL_PROJECT, "local")
        write_token(path, token)
        return token


# -- before any route: Host allow-list, Origin check -------------------------------------


def allowed_hosts(settings: Settings) -> list[str]:
    """Host header values to answer: ``allowed_hosts`` when set; else the loopback names and
    the bind address, or any host when binding every interface (names clients use are
    unknown then; tokens keep a rebinding page out, since its origin gets no cookie)."""
    if settings.allowed_hosts:
        return list(settings.allowed_hosts)
    bind = settings.host.strip("[]")
    if bind in ("", "0.0.0.0", "::"):
        return ["*"]
    hosts = ["localhost", "127.0.0.1", "[::1]"]
    try:
        literal = f"[{bind}]" if ipaddress.ip_address(bind).version == 6 else bind
    except ValueError:
        literal = bind.lower()
    if literal not in hosts:
        hosts.append(literal)
    return hosts


_DEFAULT_PORTS = {"http": "80", "https": "443"}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _origin_netloc(origin: str) -> str | None:
    parts = urlsplit(origin)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    port = str(parts.port) if parts.port else _DEFAULT_PORTS[parts.scheme]
    return f"{host}:{port}".lower()


def _host_netloc(host: str, scheme: str) -> str:
    host = host.lower()
    if host.endswith("]") or ":" not in host:  # no port: the scheme's default
        return f"{host}:{_DEFAULT_PORTS.get(scheme, '80')}"
    return host


class OriginCheck:
    """Refuses (403) a state-changing request that a browser sent from another site's page.

    Browsers send ``Origin`` with every POST; it must name this site (the request's
    ``Host``) or one of ``allowed``. ``Origin: null`` (sandboxed frames, files) is refused.
    Requests with no ``Origin`` come from programs (the SDK, curl), which a page cannot
    make a user's browser send, unless ``Sec-Fetch-Site`` says it is cross-site.
    """

    def __init__(self, app: ASGIApp, allowed: Iterable[str] = ()) -> None:
        self.app = app
        self.allowed = {n for n in (_origin_netloc(o) for o in allowed) if n}

    def refusal(self, headers: Headers, scheme: str) -> str | None:
        origin = headers.get("origin")
        if origin is None:
            if headers.get("sec-fetch-site") == "cross-site":
                return "cross-site request refused"
            return None
        netloc = _origin_netloc(origin)
        if netloc is not None and (
            netloc in self.allowed or netloc == _host_netloc(headers.get("host", ""), scheme)
        ):
            return None
        return (
            f"cross-origin request from {origin[:200]!r} refused; "
            "add that origin to JUDGESERVE_ALLOWED_ORIGINS if it is yours"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            reason = self.refusal(Headers(scope=scope), scope.get("scheme", "http"))
            if reason is not None:
                await JSONResponse({"detail": reason}, status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


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
