"""What every read shares: connections, the per-project and flag filters."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy import and_, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql import ColumnElement

from ..store import (
    Store,
    alerts,
    runs,
    scores,
    store_error,
)

SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
# The runs list draws one "headline" metric per run: the first of these the run has.
HEADLINE_PREFERENCE = (
    "judge.",
    "reference.semscore",
    "memorization.memorized",
    "repetition.loop",
    "diversity.",
    "length.tokens",
)

Source = Connection | Engine | Store
P = ParamSpec("P")
R = TypeVar("R")


@contextmanager
def connect(source: Source) -> Iterator[Connection]:
    """A read connection; database errors become :class:`StoreUnavailable` or
    :class:`StoreError` (:func:`judgeserve.store.store_error`)."""
    if isinstance(source, Connection):
        yield source
        return
    engine = source.engine if isinstance(source, Store) else source
    try:
        with engine.connect() as conn:
            yield conn
    except SQLAlchemyError as e:
        raise store_error(e) from e


def _reads(fn: Callable[Concatenate[Connection, P], R]) -> Callable[Concatenate[Source, P], R]:
    # A read called with a store or engine gets a connection of its own.
    @functools.wraps(fn)
    def wrapper(source: Source, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with connect(source) as conn:
            return fn(conn, *args, **kwargs)

    return wrapper


def _project_runs(project: str | None) -> list[ColumnElement[bool]]:
    # ``project`` is the caller's (auth on) or None (auth off: every run is visible).
    return [] if project is None else [runs.c.project == project]


def _flag_clause() -> ColumnElement[bool]:
    # A boolean score is a flag: true means the detector fired (repetition.loop, ...).
    return and_(scores.c.is_bool.is_(True), scores.c.value == 1.0)


def _alert_where(
    run: str | None, state: str | None, project: str | None = None
) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if project is not None:
        where.append(alerts.c.run.in_(select(runs.c.name).where(runs.c.project == project)))
    if run is not None:
        where.append(alerts.c.run == run)
    if state is not None:
        where.append(alerts.c.state == state)
    return where
