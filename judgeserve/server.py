"""Running the processes: the API under uvicorn, workers, and both together for local use."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from .api import create_app
from .settings import Settings
from .store import Store
from .worker import Worker

__all__ = ["serve_api", "run_stack", "background_stack"]

log = logging.getLogger(__name__)


def serve_api(settings: Settings, store: Store | None = None) -> None:
    app = create_app(settings, store=store)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:
        # The calling thread owns the signals (a CLI, or a test).
        pass


@contextmanager
def background_stack(settings: Settings) -> Iterator[Worker]:
    """API + one worker in threads of this process, stopped when the block exits."""
    store = Store(settings.database_url)
    worker = Worker(settings, store=store)
    server = _Server(
        uvicorn.Config(
            create_app(settings, store=store),
            host=settings.host,
            port=settings.port,
            log_level="warning",
        )
    )
    threads = [
        threading.Thread(target=server.run, name="judgeserve-api", daemon=True),
        threading.Thread(target=worker.run, name="judgeserve-worker", daemon=True),
    ]
    for t in threads:
        t.start()
    while not server.started:
        if not threads[0].is_alive():
            raise RuntimeError(f"the API could not start on {settings.host}:{settings.port}")
        threading.Event().wait(0.05)
    try:
        yield worker
    finally:
        worker.stop()
        server.should_exit = True
        for t in threads:
            t.join(timeout=10)
        worker.close()
        store.close()


def run_stack(settings: Settings) -> None:
    """``judgeserve up``: serve until interrupted."""
    stop = threading.Event()
    with background_stack(settings):
        log.info("judgeserve up at http://%s:%d", settings.host, settings.port)
        print(f"judgeserve is up: http://{settings.host}:{settings.port}  (Ctrl-C to stop)")
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
