"""Tokens and dead letters."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, select
from sqlalchemy.engine import Connection

from ..store import (
    plain,
    tokens,
)

if TYPE_CHECKING:
    from ..stream import Queue, StreamName

from ._base import _reads

__all__ = ["token", "list_tokens", "deadletters"]

# -- tokens, dead letters ------------------------------------------------------------------


@_reads
def token(conn: Connection, token_id: str) -> tuple[str, str] | None:
    """``(project, secret hash)`` of a token that is not revoked, or None."""
    row = conn.execute(
        select(tokens.c.project, tokens.c.hash).where(
            and_(tokens.c.id == token_id, tokens.c.revoked.is_(False))
        )
    ).first()
    return (str(row.project), str(row.hash)) if row else None


@_reads
def list_tokens(conn: Connection) -> list[dict[str, Any]]:
    """Every token's id, project, name, created and revoked (never a secret)."""
    q = select(tokens.c.id, tokens.c.project, tokens.c.name, tokens.c.created, tokens.c.revoked)
    return [plain(r) for r in conn.execute(q).mappings()]


def deadletters(
    queue: Queue,
    limit: int,
    visible: Callable[[str], bool] = lambda run: True,
    stream: StreamName = "samples",
) -> list[dict[str, Any]]:
    """Dead letters, oldest first, of the runs ``visible(run)`` lets the caller see: the
    sample or checkpoint job (``payload``), its last ``error`` and how many
    ``deliveries`` it had."""
    found = queue.deadletters(limit, stream=stream)
    return [d for d in found if visible(str(d["payload"].get("run")))]
