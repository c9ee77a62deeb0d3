"""Worker liveness: each worker says in Redis that it is alive and what it is doing.

A worker's :class:`Keeper` thread writes ``<prefix>:worker:<consumer>`` every
``worker_heartbeat_s`` with a time-to-live of three beats, so a worker that dies (killed,
its thread crashed, its machine gone) disappears from Redis on its own; one that stops
cleanly deletes its key. ``/healthz`` lists the live ones (:func:`read_heartbeats`),
with their state: ``idle``, ``scoring``, ``waiting for the store``, ``waiting for
Redis``. The same thread keeps the entries the worker holds claimed
(:meth:`~judgeserve.stream.Queue.keep_claimed`), so a slow batch or a batch waiting for
the store is not taken over by another worker.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .exceptions import QueueError

if TYPE_CHECKING:
    import redis.asyncio as aredis

    from .stream import Keys, Queue

__all__ = ["Keeper", "read_heartbeats", "heartbeat_key", "BEATS_TO_DEAD"]

log = logging.getLogger(__name__)

BEATS_TO_DEAD = 3  # a worker silent for this many heartbeats is gone


def heartbeat_key(keys: Keys, consumer: str) -> str:
    return keys.worker(consumer)


class Keeper:
    """The worker's background thread: heartbeats, and its held entries kept claimed.

    ``held`` gives the ids the worker owns and has not settled; ``status`` what it is
    doing (``{"state", "detail", "since"}``). Both are called from this thread.
    """

    def __init__(
        self,
        queue: Queue,
        held: Callable[[], list[str]],
        status: Callable[[], dict[str, Any]],
        heartbeat_s: float,
    ) -> None:
        self.queue = queue
        self.held = held
        self.status = status
        self.heartbeat_s = heartbeat_s
        self.key = heartbeat_key(queue.keys, queue.consumer)
        # Refresh well before another worker may take the entries over.
        self.tick_s = max(0.02, min(heartbeat_s, queue.claim_idle_ms / 1000 / 3))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="judgeserve-keeper", daemon=True)
        self._last_error = 0.0

    def start(self) -> Keeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop beating and say so at once (the key is deleted, not left to expire)."""
        self._stop.set()
        self._thread.join(timeout=10)
        try:
            self.queue.redis.delete(self.key)
        except Exception as e:  # Redis down: the key expires on its own
            log.debug("heartbeat not cleared: %s", e)

    def _run(self) -> None:
        next_beat = 0.0
        while not self._stop.is_set():
            try:
                try:
                    ids = self.held()
                except RuntimeError:  # the worker changed the set while we copied it
                    ids = []
                if ids:
                    self.queue.keep_claimed(ids)
                if time.monotonic() >= next_beat:
                    self.beat()
                    next_beat = time.monotonic() + self.heartbeat_s
            except QueueError as e:
                self._complain(e)
            except Exception as e:  # never let the keeper die quietly
                log.exception("worker keeper failed: %s", e)
            self._stop.wait(self.tick_s)

    def beat(self) -> None:
        body = {
            "consumer": self.queue.consumer,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "at": time.time(),
            **self.status(),
        }
        ttl_ms = max(1, int(self.heartbeat_s * BEATS_TO_DEAD * 1000))
        try:
            self.queue.redis.set(self.key, json.dumps(body), px=ttl_ms)
        except Exception as e:
            raise QueueError(f"heartbeat not written: {e}") from e

    def _complain(self, e: Exception) -> None:
        now = time.monotonic()
        if now - self._last_error > 30:
            self._last_error = now
            log.warning("worker keeper: %s", e)


async def read_heartbeats(client: aredis.Redis, keys: Keys) -> list[dict[str, Any]]:
    """The live workers' last heartbeats, by consumer name: ``{"consumer", "host", "pid",
    "at", "state", "detail", "since"}`` (times in Unix seconds)."""
    found: list[bytes] = []
    async for key in client.scan_iter(match=keys.workers, count=500):
        found.append(key)
    if not found:
        return []
    values = await client.mget(found)
    out = []
    for raw in values:
        if raw is None:  # expired between the scan and the read
            continue
        try:
            beat = json.loads(raw)
        except ValueError:
            continue
        if isinstance(beat, dict):
            out.append(beat)
    return sorted(out, key=lambda b: str(b.get("consumer")))
