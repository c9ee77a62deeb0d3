"""The FastAPI application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis
from fastapi import FastAPI

from .. import __version__, web
from ..auth import auth_enabled
from ..exceptions import QueueError
from ..settings import Settings, get_settings
from ..store import Store
from ..stream import AsyncProducer, durability_warnings
from . import errors, routes
from .limits import BodySizeLimit
from .security import TokenCache

log = logging.getLogger(__name__)


def _warn_durability(url: str) -> None:
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        for warning in durability_warnings(client):
            log.warning(warning)
    except QueueError as e:
        log.warning("%s (the API answers 503 until it is back)", e)
    finally:
        client.close()


def create_app(settings: Settings | None = None, *, store: Store | None = None) -> FastAPI:
    """Build the API; ``store`` may be shared with an in-process worker (``judgeserve up``)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.store = store or Store(settings.database_url)
        app.state.producer = AsyncProducer(settings.redis_url, prefix=settings.stream_prefix)
        app.state.backlog = routes.BacklogGauge(app.state.producer, settings.max_backlog)
        app.state.auth = auth_enabled(settings.auth, settings.host)
        app.state.tokens = TokenCache()
        _warn_durability(settings.redis_url)
        try:
            yield
        finally:
            await app.state.producer.close()
            if store is None:
                app.state.store.close()

    app = FastAPI(
        title="judgeserve",
        version=__version__,
        description="Evaluate fine-tuning runs beside the training loop.",
        lifespan=lifespan,
    )
    errors.install(app)
    app.include_router(routes.router)
    web.install(app)  # the web view: pages, /live, /static
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    return app
