"""Redis Streams between the API and the workers.

Two streams with the same guarantees: ``<prefix>:samples`` (samples to score, read by
:mod:`judgeserve.worker`) and ``<prefix>:checkpoints`` (checkpoint mode's generation
jobs, read by :mod:`judgeserve.generation_worker`, which hands each job's completions to
the sample stream in the same transaction that acknowledges the job).

At-least-once: an entry is acknowledged only after its results are stored; entries left
pending by a dead consumer are reclaimed with XAUTOCLAIM. An entry delivered more than
``max_deliveries`` times without being stored (it kills its worker, or the store refuses
it) moves to the dead-letter stream. A scorer that fails on a sample is retried for that
sample alone: the entry goes to a sorted set of retries due later (backoff doubling per
attempt) and back onto the stream when due; after ``max_deliveries`` attempts it is
dead-lettered with the error. The stream is never trimmed past unacknowledged entries:
acknowledged entries are deleted one by one (XACK + XDEL), so only work still owed stays.

Each process builds its clients once (:meth:`Queue.from_settings`,
:meth:`AsyncProducer.from_settings`) and passes them down. Redis errors that mean "not
reachable now" (:data:`RETRYABLE`) become :class:`~judgeserve.exceptions.QueueError`.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis
import redis.asyncio as aredis

from .exceptions import QueueError
from .keys import Keys, StreamName
from .telemetry import field_name

if TYPE_CHECKING:
    from .settings import Settings

__all__ = [
    "Keys",
    "StreamName",
    "Entry",
    "Queue",
    "AsyncProducer",
    "RETRYABLE",
    "durability_warnings",
]

log = logging.getLogger(__name__)

# Redis is not reachable now (down, restarting, a network blip): try again later.
RETRYABLE = (redis.ConnectionError, redis.TimeoutError, OSError)
DEADLETTER_PAGE = 1000  # dead letters requeued per XRANGE when requeueing all


@dataclass
class Entry:
    """One stream entry: its id and the JSON payload the API wrote."""

    id: str
    payload: dict[str, Any]
    deliveries: int = 1


def _decode(fields: dict[bytes, bytes]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(fields[b"data"])
    return data


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Queue:
    """The worker's side of the stream (synchronous redis-py), and the dead letters.

    ``stream`` picks the sample stream (scoring workers) or the checkpoint-job stream
    (generation workers); both have the same guarantees. ``create_group`` makes the
    consumer group at once (a worker's queue); a process that only reads or requeues
    dead letters (the API) leaves it to the workers.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "js",
        group: str = "workers",
        consumer: str | None = None,
        max_deliveries: int = 5,
        claim_idle_ms: int = 60_000,
        retry_delay_s: float = 5.0,
        create_group: bool = True,
        stream: StreamName = "samples",
    ) -> None:
        self.redis: redis.Redis = redis.Redis.from_url(url)
        self.keys = Keys(prefix)
        self.stream = stream
        self.stream_key, self.dead_key, self.retry_key = self.keys.of(stream)
        self.group = group
        self.consumer = consumer or default_consumer_name()
        self.max_deliveries = max_deliveries
        self.claim_idle_ms = claim_idle_ms
        self.retry_delay_s = retry_delay_s
        self._own_pending_done = False
        if create_group:
            self.ensure_group()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        consumer: str | None = None,
        *,
        create_group: bool = True,
        stream: StreamName = "samples",
    ) -> Queue:
        """The stream of ``settings``; build one per process and pass it down."""
        return cls(
            settings.redis_url,
            prefix=settings.stream_prefix,
            group=settings.consumer_group,
            consumer=consumer,
            max_deliveries=settings.max_deliveries,
            claim_idle_ms=settings.claim_idle_ms,
            retry_delay_s=settings.retry_delay_s,
            create_group=create_group,
            stream=stream,
        )

    def ensure_group(self) -> None:
        try:
            self.redis.xgroup_create(self.stream_key, self.group, id="0", mkstream=True)
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise QueueError(f"cannot create consumer group: {e}") from e
        except RETRYABLE as e:
            raise QueueError(f"Redis unreachable: {e}") from e

    def add(self, payloads: list[dict[str, Any]]) -> list[str]:
        """Append entries (used by tests and tools; the API uses :class:`AsyncProducer`)."""
        pipe = self.redis.pipeline(transaction=False)
        for p in payloads:
            pipe.xadd(self.stream_key, {"data": json.dumps(p)})
        return [i.decode() for i in pipe.execute()]

    def read(self, count: int, block_ms: int = 1000) -> list[Entry]:
        """Next batch for this consumer: its own pending first, then stale, then new entries."""
        try:
            if not self._own_pending_done:
                # After a restart under the same name, finish what this consumer was given.
                own = self._read_group("0", count, None)
                if own:
                    return self._with_counts(own)
                self._own_pending_done = True
            claimed = self.claim_stale(count)
            if claimed:
                return claimed
            return self._read_group(">", count, block_ms)
        except RETRYABLE as e:
            raise QueueError(f"Redis unreachable: {e}") from e
        except redis.ResponseError as e:
            # The stream or group was deleted under us (NOGROUP, or UNBLOCKED while we
            # waited): recreate them; whatever was lost with the key is gone either way.
            if "NOGROUP" not in str(e) and "UNBLOCKED" not in str(e):
                raise QueueError(f"Redis refused the read: {e}") from e
            log.warning("stream or consumer group vanished (%s); recreating", e)
            self.ensure_group()
            return []

    def _read_group(self, last_id: str, count: int, block_ms: int | None) -> list[Entry]:
        resp: Any = self.redis.xreadgroup(
            self.group, self.consumer, {self.stream_key: last_id}, count=count, block=block_ms
        )
        out: list[Entry] = []
        for _stream, messages in resp or []:
            for mid, fields in messages:
                if fields:  # a deleted entry still pending shows as empty
                    out.append(Entry(mid.decode(), _decode(fields)))
                else:
                    self.redis.xack(self.stream_key, self.group, mid)
        return out

    def claim_stale(self, count: int) -> list[Entry]:
        """Take over entries another consumer left pending longer than ``claim_idle_ms``."""
        resp: Any = self.redis.xautoclaim(
            self.stream_key,
            self.group,
            self.consumer,
            min_idle_time=self.claim_idle_ms,
            start_id="0-0",
            count=count,
        )
        messages = resp[1]
        entries = [Entry(mid.decode(), _decode(f)) for mid, f in messages if f]
        if entries:
            log.info("reclaimed %d stale entries", len(entries))
        return self._with_counts(entries)

    def _with_counts(self, entries: list[Entry]) -> list[Entry]:
        if not entries:
            return entries
        info: Any = self.redis.xpending_range(
            self.stream_key, self.group, min=entries[0].id, max=entries[-1].id,
            count=len(entries) * 2 + 10,
        )
        counts = {
            (p["message_id"].decode() if isinstance(p["message_id"], bytes) else p["message_id"]):
            int(p["times_delivered"])
            for p in info
        }
        for e in entries:
            e.deliveries = counts.get(e.id, 1)
        return entries

    def ack(self, ids: list[str]) -> None:
        if not ids:
            return
        pipe = self.redis.pipeline(transaction=True)
        pipe.xack(self.stream_key, self.group, *ids)
        pipe.xdel(self.stream_key, *ids)
        pipe.execute()

    def heartbeat(self, ids: list[Any]) -> None:
        """Reset the idle time of entries this consumer is still working on, so that a long
        job (generating a checkpoint's completions) is not reclaimed by another consumer
        after ``claim_idle_ms``; entries of a consumer that died stop being touched."""
        if ids:
            try:
                self.redis.xclaim(
                    self.stream_key, self.group, self.consumer, 0, ids, justid=True
                )
            except RETRYABLE as e:
                raise QueueError(f"Redis unreachable: {e}") from e

    def hand_off(self, entry: Entry, samples: list[dict[str, Any]]) -> None:
        """Append ``samples`` to the sample stream and acknowledge ``entry`` (a checkpoint
        job) in one transaction: a worker killed at any point leaves either the job
        pending (it is generated again, under the same sample ids) or both done."""
        pipe = self.redis.pipeline(transaction=True)
        for p in samples:
            pipe.xadd(self.keys.samples, {"data": json.dumps(p)})
        pipe.xack(self.stream_key, self.group, entry.id)
        pipe.xdel(self.stream_key, entry.id)
        try:
            pipe.execute()
        except RETRYABLE as e:
            raise QueueError(f"Redis unreachable: {e}") from e

    def dead_letter(
        self, entry: Entry, error: str, tries: int, payload: dict[str, Any] | None = None
    ) -> None:
        """Move an entry to the dead-letter stream with why, and take it off the stream."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.xadd(
            self.dead_key,
            {
                "data": json.dumps(payload if payload is not None else entry.payload),
                "error": error[:4000],
                "original_id": entry.id,
                "deliveries": str(tries),
            },
        )
        pipe.xack(self.stream_key, self.group, entry.id)
        pipe.xdel(self.stream_key, entry.id)
        # Counted in the same transaction: /metrics shows every dead letter, once.
        dead = field_name("judgeserve_deadlettered_total", {"stream": self.stream})
        pipe.hincrbyfloat(self.keys.metrics, dead, 1)
        pipe.execute()
        log.warning("dead-lettered %s after %d tries: %s", entry.id, tries, error[:200])

    def retry_later(self, entry: Entry, scorers: list[str], error: str) -> bool:
        """Schedule ``scorers`` to run again on this entry's sample, after a backoff that
        doubles per attempt; dead-letter it after ``max_deliveries`` attempts.

        Returns True when the sample was dead-lettered.
        """
        attempt = int(entry.payload.get("attempt", 0)) + 1
        payload = {**entry.payload, "only": scorers, "attempt": attempt}
        if attempt >= self.max_deliveries:
            self.dead_letter(entry, error, attempt, payload)
            return True
        due = time.time() + self.retry_delay_s * 2 ** (attempt - 1)
        member = json.dumps({"nonce": uuid.uuid4().hex, "payload": payload})
        self.redis.zadd(self.retry_key, {member: due})
        return False

    def promote_due_retries(self, limit: int = 100) -> int:
        """Move retries whose time has come back onto the stream (once, across workers)."""
        try:
            due: Any = self.redis.zrangebyscore(self.retry_key, 0, time.time(), start=0, num=limit)
            moved = 0
            for member in due:
                # ZREM answers 1 to exactly one worker: that one re-queues it.
                if self.redis.zrem(self.retry_key, member):
                    payload = json.loads(member)["payload"]
                    self.redis.xadd(self.stream_key, {"data": json.dumps(payload)})
                    moved += 1
            return moved
        except RETRYABLE as e:
            raise QueueError(f"Redis unreachable: {e}") from e

    def deadletters(
        self, count: int = 100, *, stream: StreamName | None = None
    ) -> list[dict[str, Any]]:
        """Dead letters, oldest first (see :func:`read_deadletters`), of this queue's stream
        or of ``stream`` (the API reads the checkpoint jobs' beside the samples')."""
        try:
            return read_deadletters(self.redis, self._keys(stream)[1], count)
        except RETRYABLE as e:
            raise QueueError(f"Redis unreachable: {e}") from e

    def deadletter(self, entry_id: str, *, stream: StreamName | None = None) -> dict[str, Any] | None:
        """One dead letter by id (one ``XRANGE id id``), or None."""
        key = self._keys(stream)[1]
        try:
            found = read_deadletters(self.redis, key, 1, start=entry_id, end=entry_id)
        except RETRYABLE as e:
            raise QueueError(f"Redis unreachable: {e}") from e
        return found[0] if found else None

    def requeue_deadletters(
        self, ids: list[str] | None = None, *, stream: StreamName | None = None
    ) -> int:
        """Put dead letters back on their stream (all, or the given ids); returns how
        many. Each id is looked up on its own (no scan); all are walked page by page."""
        keys = self._keys(stream)
        if ids is not None:
            found = [self.deadletter(i, stream=stream) for i in ids]
            return sum(self._requeue(d, *keys) for d in found if d is not None)
        moved, start = 0, "-"
        while page := read_deadletters(self.redis, keys[1], DEADLETTER_PAGE, start=start):
            moved += sum(self._requeue(d, *keys) for d in page)
            start = "(" + page[-1]["id"]  # exclusive: after the last one seen
        return moved

    def _keys(self, stream: StreamName | None) -> tuple[str, str]:
        """(stream, dead letters) of ``stream``, or of this queue's own."""
        if stream is None:
            return self.stream_key, self.dead_key
        return self.keys.of(stream)[:2]

    def _requeue(self, item: dict[str, Any], stream_key: str, dead_key: str) -> int:
        payload = {k: v for k, v in item["payload"].items() if k != "attempt"}
        pipe = self.redis.pipeline(transaction=True)
        pipe.xadd(stream_key, {"data": json.dumps(payload)})
        pipe.xdel(dead_key, item["id"])
        pipe.execute()
        return 1

    def durability_warnings(self) -> list[str]:
        """What in this Redis's configuration could lose accepted samples."""
        return durability_warnings(self.redis)

    def backlog(self) -> int:
        """Entries still owed: in the stream, plus retries waiting for their time."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.xlen(self.stream_key)
        pipe.zcard(self.retry_key)
        n: Any = pipe.execute()
        return int(n[0]) + int(n[1])

    def close(self) -> None:
        self.redis.close()


def read_deadletters(
    client: redis.Redis, key: str, count: int = 100, *, start: str = "-", end: str = "+"
) -> list[dict[str, Any]]:
    """Dead letters, oldest first: the entry, its last error and how often it was tried."""
    items: Any = client.xrange(key, min=start, max=end, count=count)
    return [
        {
            "id": mid.decode(),
            "payload": _decode(f),
            "error": f[b"error"].decode(),
            "deliveries": int(f[b"deliveries"]),
        }
        for mid, f in items
    ]


def durability_warnings(client: redis.Redis) -> list[str]:
    """Check AOF and eviction: streams must survive a restart and never be evicted."""
    try:
        conf: Any = client.config_get("appendonly")
        conf.update(client.config_get("appendfsync"))
        conf.update(client.config_get("maxmemory-policy"))
    except redis.ResponseError:
        return []  # CONFIG is disabled on many managed Redis services: nothing to check
    except RETRYABLE as e:
        raise QueueError(f"Redis unreachable: {e}") from e
    found = []
    if conf.get("appendonly") != "yes":
        found.append(
            "Redis has AOF off (appendonly no): a Redis restart loses queued samples; "
            "set appendonly yes with appendfsync everysec (or always)"
        )
    elif conf.get("appendfsync") == "no":
        found.append("Redis appendfsync is 'no': set everysec or always")
    policy = conf.get("maxmemory-policy", "noeviction")
    if policy != "noeviction":
        found.append(
            f"Redis maxmemory-policy is {policy!r}: under memory pressure it may evict the "
            "sample stream; set noeviction"
        )
    return found


class AsyncProducer:
    """The API's side: appends accepted samples to the stream (redis.asyncio)."""

    def __init__(self, url: str, *, prefix: str = "js") -> None:
        self.redis: aredis.Redis = aredis.Redis.from_url(url)
        self.keys = Keys(prefix)

    @classmethod
    def from_settings(cls, settings: Settings) -> AsyncProducer:
        return cls(settings.redis_url, prefix=settings.stream_prefix)

    async def add(self, payloads: list[str]) -> None:
        """Append pre-serialised JSON payloads in one round trip."""
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for p in payloads:
                    pipe.xadd(self.keys.samples, {"data": p})
                await pipe.execute()
        except RETRYABLE as e:
            raise QueueError(f"Redis unreachable: {e}") from e

    async def add_job(self, payload: str) -> str:
        """Append a checkpoint job (pre-serialised JSON) to the checkpoint stream."""
        try:
            entry_id: Any = await self.redis.xadd(self.keys.checkpoints, {"data": payload})
        except RETRYABLE as e:
            raise QueueError(f"Redis unreachable: {e}") from e
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    async def backlog(self) -> int:
        try:
            return int(await self.redis.xlen(self.keys.samples))
        except RETRYABLE as e:
            raise QueueError(f"Redis unreachable: {e}") from e

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except RETRYABLE:
            return False

    async def close(self) -> None:
        await self.redis.aclose()
