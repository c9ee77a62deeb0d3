"""API tokens per project: made once, stored as hashes, checked in constant time.

A token reads ``js_<id>_<secret>``. The id finds the row; the secret's SHA-256 is compared
with ``hmac.compare_digest``. Secrets are 256 random bits, so a fast hash is enough (no
password stretching needed). A token belongs to one project and reaches only that
project's runs: a run is owned by the project whose token first wrote to it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, insert, select, update

from .store import Store, runs, tokens

__all__ = [
    "Principal",
    "create_token",
    "revoke_token",
    "list_tokens",
    "verify",
    "auth_enabled",
    "COOKIE",
]

COOKIE = "judgeserve_token"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a project, or everyone when auth is off (``project is None``)."""

    project: str | None

    def may_access(self, owner: str | None) -> bool:
        return self.project is None or owner == self.project


ANYONE = Principal(project=None)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(store: Store, project: str, name: str = "") -> str:
    """Make a token for ``project``; the returned string is shown once and never stored."""
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    with store.begin() as conn:
        conn.execute(
            insert(tokens).values(
                id=token_id,
                project=project,
                name=name,
                hash=_hash(secret),
                created=datetime.now(UTC),
                revoked=False,
            )
        )
    return f"js_{token_id}_{secret}"


def revoke_token(store: Store, token_id: str) -> bool:
    with store.begin() as conn:
        res = conn.execute(update(tokens).where(tokens.c.id == token_id).values(revoked=True))
        return bool(res.rowcount)


def list_tokens(store: Store) -> list[dict[str, Any]]:
    with store.begin() as conn:
        rows = conn.execute(
            select(tokens.c.id, tokens.c.project, tokens.c.name, tokens.c.created, tokens.c.revoked)
        ).mappings()
        return [dict(r) for r in rows]


def verify(store: Store, token: str) -> Principal | None:
    """The token's project, or None when the token is unknown, revoked or wrong."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != "js":
        return None
    _, token_id, secret = parts
    with store.begin() as conn:
        row = conn.execute(
            select(tokens.c.project, tokens.c.hash).where(
                and_(tokens.c.id == token_id, tokens.c.revoked.is_(False))
            )
        ).first()
    # Compare even when the id is unknown, so timing does not tell ids apart.
    expected = row.hash if row else "0" * 64
    if not hmac.compare_digest(_hash(secret), expected) or row is None:
        return None
    return Principal(project=row.project)


def run_owner(store: Store, run: str) -> tuple[bool, str | None]:
    """(exists, owning project) of a run."""
    with store.begin() as conn:
        row = conn.execute(select(runs.c.project).where(runs.c.name == run)).first()
    return (row is not None, row.project if row else None)


def claim_run(store: Store, run: str, project: str) -> str | None:
    """Register ``run`` for ``project`` unless it exists; returns the run's owner."""
    now = datetime.now(UTC)
    with store.begin() as conn:
        ins = store._insert(runs).values(
            name=run, project=project, last_step=0, created=now, updated=now
        )
        conn.execute(ins.on_conflict_do_nothing())
        row = conn.execute(select(runs.c.project).where(runs.c.name == run)).first()
    return row.project if row else None


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
