"""Redis Streams between the API and the workers.

Two streams with the same guarantees: ``<prefix>:samples`` (samples to score, read by
:mod:`judgeserve.worker`) and ``<prefix>:checkpoints`` (checkpoint mode's generation
jobs, read by :mod:`judgeserve.generation_worker`, which hands each job's completions to
the sample stream in the same transaction that acknowledges the job).

At-least-once: an entry is acknowledged only after its results are stored; entries left
pending by a dead consumer are reclaimed. An entry delivered more than ``max_deliveries``
times without being stored (it kills its worker, or the store refuses it) moves to the
dead-letter stream. A scorer that fails on a sample is retried for that sample alone: the
entry goes to a sorted set of retries due later (backoff doubling per attempt) and back
onto the stream when due (one Lua script: never in neither place); after
``max_deliveries`` attempts it is dead-lettered with the error. The stream is never
trimmed past unacknowledged entries: acknowledged entries are deleted one by one (XACK +
XDEL), so only work still owed stays.

A delivery counts only when an entry is really tried. Entries taken over from a dead
consumer (or left pending by this one before a restart) are claimed without counting
(``XAUTOCLAIM ... JUSTID``) and then handed out one at a time, each counted as it is
tried: a sample that kills its worker runs up only its own count, not its batch's. While
a worker holds entries (scoring a slow batch, waiting for the store to come back) it
refreshes their idle time (:meth:`Queue.keep_claimed`, ``XCLAIM ... JUSTID``), so no other
worker takes them over and an outage costs no deliveries.

Each process builds its clients once (:meth:`Queue.from_settings`,
:meth:`AsyncProducer.from_settings`), with socket timeouts so a silent partition cannot
hang them. Every Redis error becomes :class:`~judgeserve.exceptions.QueueError`: Redis is
not usable now, try again later.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
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
    "Retry",
    "Queue",
    "AsyncProducer",
    "RETRYABLE",
    "durability_warnings",
    "redis_client",
]

log = logging.getLogger(__name__)

# Redis cannot serve us now (down, restarting, a timeout, a network blip, out of memory,
# loading its data, a read-only replica): try again later.
RETRYABLE = (redis.RedisError, OSError)
DEADLETTER_PAGE = 1000  # dead letters requeued per XRANGE when requeueing all
NONCE_LEN = 32  # a retry is stored as a hex nonce followed by its payload's JSON

# Moves due retries back onto the stream in one step: a crash between the ZREM and the
# XADD of two separate commands would lose the retry. Members stored before the nonce
# prefix (a JSON object) are re-encoded from their "payload".
_PROMOTE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  redis.call('ZREM', KEYS[1], member)
  local data
  if string.sub(member, 1, 1) == '{' then
    data = cjson.encode(cjson.decode(member)['payload'])
  else
    data = string.sub(member, tonumber(ARGV[3]) + 1)
  end
  redis.call('XADD', KEYS[2], '*', 'data', data)
end
return #due
"""


def redis_client(
    url: str, *, socket_timeout: float | None = 10.0, connect_timeout: float | None = 5.0
) -> redis.Redis:
    """A synchronous client with socket timeouts (none by default in redis-py: a silent
    partition would hang a worker forever)."""
    client: redis.Redis = redis.Redis.from_url(
        url, socket_timeout=socket_timeout, socket_connect_timeout=connect_timeout
    )
    return client


@contextmanager
def _unavailable(what: str) -> Iterator[None]:
    try:
        yield
    except RETRYABLE as e:
        raise QueueError(f"Redis unavailable ({what}): {type(e).__name__}: {e}") from e




@dataclass
class Entry:
    """One stream entry: its id and the JSON payload the API wrote."""

    id: str
    payload: dict[str, Any]
    deliveries: int = 1


@dataclass
class Retry:
    """Scorers to run again on an entry's sample, and why they failed."""

    entry: Entry
    scorers: list[str]
    error: str


def _decode(fields: dict[bytes, bytes]) -> dict[str, Any]:
    # Whatever was written, the worker gets a dict: one it cannot validate is dead-lettered
    # with what was there, instead of failing the read of the whole batch.
    raw = fields.get(b"data", b"")
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if isinstance(data, dict):
        return data
    return {"_undecodable": raw.decode("utf-8", "backslashreplace")[:4000]}


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
        socket_timeout: float | None = 10.0,
        connect_timeout: float | None = 5.0,
        stream: StreamName = "samples",
    ) -> None:
        self.redis = redis_client(url, socket_timeout=socket_timeout, connect_timeout=connect_timeout)
        self.keys = Keys(prefix)
        self.stream = stream
        self.stream_key, self.dead_key, self.retry_key = self.keys.of(stream)
        self.group = group
        self.consumer = consumer or default_consumer_name()
        self.max_deliveries = max_deliveries
        self.claim_idle_ms = claim_idle_ms
        self.retry_delay_s = retry_delay_s
        self._own_pending_done = False
        # Entries this consumer owns but has not tried yet (taken over, or pending from
        # before a restart): handed out one at a time by read().
        self._suspects: deque[str] = deque()
        self._promote = self.redis.register_script(_PROMOTE)
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
            socket_timeout=settings.redis_socket_timeout_s,
            connect_timeout=settings.redis_connect_timeout_s,
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
        with _unavailable("add"):
            pipe = self.redis.pipeline(transaction=False)
            for p in payloads:
                pipe.xadd(self.stream_key, {"data": json.dumps(p)})
            return [i.decode() for i in pipe.execute()]

    def still_queued(self, ids: list[str]) -> list[str]:
        """Those of ``ids`` still in the stream: not yet processed (acknowledged entries
        are deleted; an entry set aside for a retry or dead-lettered left it too)."""
        if not ids:
            return []
        with _unavailable("still_queued"):
            pipe = self.redis.pipeline(transaction=False)
            for i in ids:
                pipe.xrange(self.stream_key, min=i, max=i, count=1)
            found: Any = pipe.execute()
        return [i for i, hit in zip(ids, found, strict=True) if hit]

    # -- reading -------------------------------------------------------------------------

    def read(self, count: int, block_ms: int = 1000) -> list[Entry]:
        """Next batch for this consumer: one entry it owns but has not tried (its own
        pending after a restart, or one taken over from a dead consumer), else up to
        ``count`` new entries."""
        try:
            if not self._own_pending_done:
                # After a restart under the same name, finish what this consumer was given.
                self._suspects.extend(self._own_pending())
                self._own_pending_done = True
            if not self._suspects:
                self._suspects.extend(self._claim_stale_ids(count))
            while self._suspects:
                found = self._try_one(self._suspects.popleft())
                if found:
                    return found
            return self._read_group(">", count, block_ms)
        except redis.ResponseError as e:
            # The stream or group was deleted under us (NOGROUP, or UNBLOCKED while we
            # waited): recreate them; whatever was lost with the key is gone either way.
            if "NOGROUP" not in str(e) and "UNBLOCKED" not in str(e):
                raise QueueError(f"Redis refused the read: {e}") from e
            log.warning("stream or consumer group vanished (%s); recreating", e)
            self._suspects.clear()
            self.ensure_group()
            return []
        except RETRYABLE as e:
            raise QueueError(f"Redis unavailable (read): {type(e).__name__}: {e}") from e

    def held(self) -> list[str]:
        """Ids this consumer owns but has not handed out yet (keep them claimed too)."""
        return list(self._suspects)

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

    def _own_pending(self) -> list[str]:
        info: Any = self.redis.xpending_range(
            self.stream_key, self.group, min="-", max="+", count=10_000, consumername=self.consumer
        )
        return [_id(p["message_id"]) for p in info]

    def _claim_stale_ids(self, count: int) -> list[str]:
        # JUSTID: ownership moves, the delivery count does not; it counts when tried.
        resp: Any = self.redis.xautoclaim(
            self.stream_key,
            self.group,
            self.consumer,
            min_idle_time=self.claim_idle_ms,
            start_id="0-0",
            count=count,
            justid=True,
        )
        ids = [_id(i) for i in resp]  # with JUSTID, redis-py returns the ids alone
        if ids:
            log.info("took over %d stale entries; trying them one at a time", len(ids))
        return ids

    def _try_one(self, entry_id: str) -> list[Entry]:
        """Deliver one owned entry (counted: XCLAIM without JUSTID), with its count."""
        resp: Any = self.redis.xclaim(
            self.stream_key, self.group, self.consumer, min_idle_time=0, message_ids=[entry_id]
        )
        entries = [Entry(_id(mid), _decode(f)) for mid, f in resp if f]
        if not entries:
            # Deleted while pending (acknowledged by a worker that was slow, not dead).
            self.redis.xack(self.stream_key, self.group, entry_id)
            return []
        return self._with_counts(entries)

    def claim_stale(self, count: int) -> list[Entry]:
        """Take over up to ``count`` entries another consumer left pending longer than
        ``claim_idle_ms`` and deliver them now (tools; the worker's :meth:`read` takes
        them over one at a time)."""
        with _unavailable("claim"):
            out: list[Entry] = []
            for entry_id in self._claim_stale_ids(count):
                out.extend(self._try_one(entry_id))
            return out

    def _with_counts(self, entries: list[Entry]) -> list[Entry]:
        if not entries:
            return entries
        info: Any = self.redis.xpending_range(
            self.stream_key, self.group, min=entries[0].id, max=entries[-1].id,
            count=len(entries) * 2 + 10,
        )
        counts = {_id(p["message_id"]): int(p["times_delivered"]) for p in info}
        for e in entries:
            e.deliveries = counts.get(e.id, 1)
        return entries

    def keep_claimed(self, ids: Iterable[str]) -> int:
        """Reset the idle time of entries this consumer still owns, without counting a
        delivery (``XCLAIM ... JUSTID``): while it works on them or waits for the store,
        no other worker takes them over. Entries another consumer has taken meanwhile
        are left to it. Returns how many were refreshed."""
        wanted = set(ids)
        if not wanted:
            return 0
        with _unavailable("keep claimed"):
            info: Any = self.redis.xpending_range(
                self.stream_key, self.group, min=min(wanted, key=_order),
                max=max(wanted, key=_order), count=len(wanted) * 2 + 10,
                consumername=self.consumer,
            )
            mine: list[Any] = sorted({_id(p["message_id"]) for p in info} & wanted, key=_order)
            if not mine:
                return 0
            got: Any = self.redis.xclaim(
                self.stream_key, self.group, self.consumer, min_idle_time=0,
                message_ids=mine, justid=True,
            )
            return len(got)

    def heartbeat(self, ids: list[Any]) -> None:
        """Reset the idle time of entries this consumer is still working on, so that a long
        job (generating a checkpoint's completions) is not reclaimed by another consumer
        after ``claim_idle_ms`` (:meth:`keep_claimed`)."""
        self.keep_claimed(_id(i) for i in ids)

    def hand_off(self, entry: Entry, samples: list[dict[str, Any]]) -> None:
        """Append ``samples`` to the sample stream and acknowledge ``entry`` (a checkpoint
        job) in one transaction: a worker killed at any point leaves either the job
        pending (it is generated again, under the same sample ids) or both done."""
        with _unavailable("hand off"):
            pipe = self.redis.pipeline(transaction=True)
            for p in samples:
                pipe.xadd(self.keys.samples, {"data": json.dumps(p)})
            pipe.xack(self.stream_key, self.group, entry.id)
            pipe.xdel(self.stream_key, entry.id)
            pipe.execute()

    # -- settling ------------------------------------------------------------------------

    def ack(self, ids: list[str]) -> None:
        """Acknowledge and delete stored entries."""
        self.settle(ids, [])

    def settle(self, ids: list[str], retries: list[Retry]) -> int:
        """In one transaction: schedule the ``retries`` (or dead-letter those out of
        attempts), then acknowledge and delete every entry of ``ids``. Nothing is half
        done: a crash before it leaves the entries pending, after it nothing is owed
        twice. Returns how many retries were dead-lettered instead."""
        if not ids and not retries:
            return 0
        dead = 0
        with _unavailable("settle"):
            pipe = self.redis.pipeline(transaction=True)
            for r in retries:
                attempt = int(r.entry.payload.get("attempt", 0)) + 1
                payload = {**r.entry.payload, "only": r.scorers, "attempt": attempt}
                if attempt >= self.max_deliveries:
                    self._queue_dead_letter(pipe, r.entry, r.error, attempt, payload)
                    dead += 1
                    continue
                due = time.time() + self.retry_delay_s * 2 ** (attempt - 1)
                member = uuid.uuid4().hex + json.dumps(payload)
                pipe.zadd(self.retry_key, {member: due})
            if ids:
                pipe.xack(self.stream_key, self.group, *ids)
                pipe.xdel(self.stream_key, *ids)
            pipe.execute()
        return dead

    def _queue_dead_letter(
        self, pipe: Any, entry: Entry, error: str, tries: int, payload: dict[str, Any]
    ) -> None:
        pipe.xadd(
            self.dead_key,
            {
                "data": json.dumps(payload),
                # The error may quote the bad text itself: a lone surrogate must not stop it.
                "error": error[:4000].encode("utf-8", "backslashreplace").decode("utf-8"),
                "original_id": entry.id,
                "deliveries": str(tries),
            },
        )
        # Counted in the same transaction: /metrics shows every dead letter, once.
        dead = field_name("judgeserve_deadlettered_total", {"stream": self.stream})
        pipe.hincrbyfloat(self.keys.metrics, dead, 1)
        log.warning("dead-lettered %s after %d tries: %s", entry.id, tries, error[:200])

    def dead_letter(
        self, entry: Entry, error: str, tries: int, payload: dict[str, Any] | None = None
    ) -> None:
        """Move an entry to the dead-letter stream with why, and take it off the stream."""
        with _unavailable("dead letter"):
            pipe = self.redis.pipeline(transaction=True)
            self._queue_dead_letter(
                pipe, entry, error, tries, payload if payload is not None else entry.payload
            )
            pipe.xack(self.stream_key, self.group, entry.id)
            pipe.xdel(self.stream_key, entry.id)
            pipe.execute()

    def retry_later(self, entry: Entry, scorers: list[str], error: str) -> bool:
        """Schedule ``scorers`` to run again on this entry's sample, after a backoff that
        doubles per attempt; dead-letter it after ``max_deliveries`` attempts. The entry
        stays pending: :meth:`settle` does both at once.

        Returns True when the sample was dead-lettered.
        """
        return bool(self.settle([], [Retry(entry, scorers, error)]))

    def promote_due_retries(self, limit: int = 100) -> int:
        """Move retries whose time has come back onto the stream (atomically, once)."""
        with _unavailable("promote retries"):
            moved: Any = self._promote(
                keys=[self.retry_key, self.stream_key], args=[time.time(), limit, NONCE_LEN]
            )
            return int(moved)

    # -- dead letters --------------------------------------------------------------------

    def deadletters(
        self, count: int = 100, *, stream: StreamName | None = None
    ) -> list[dict[str, Any]]:
        """Dead letters, oldest first (see :func:`read_deadletters`), of this queue's stream
        or of ``stream`` (the API reads the checkpoint jobs' beside the samples')."""
        with _unavailable("dead letters"):
            return read_deadletters(self.redis, self._keys(stream)[1], count)

    def deadletter(self, entry_id: str, *, stream: StreamName | None = None) -> dict[str, Any] | None:
        """One dead letter by id (one ``XRANGE id id``), or None."""
        key = self._keys(stream)[1]
        with _unavailable("dead letter"):
            found = read_deadletters(self.redis, key, 1, start=entry_id, end=entry_id)
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
        with _unavailable("requeue"):
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
        with _unavailable("requeue"):
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
        with _unavailable("backlog"):
            pipe = self.redis.pipeline(transaction=False)
            pipe.xlen(self.stream_key)
            pipe.zcard(self.retry_key)
            n: Any = pipe.execute()
            return int(n[0]) + int(n[1])

    def close(self) -> None:
        self.redis.close()


def _id(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


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

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "js",
        socket_timeout: float | None = 10.0,
        connect_timeout: float | None = 5.0,
    ) -> None:
        self.redis: aredis.Redis = aredis.Redis.from_url(
            url, socket_timeout=socket_timeout, socket_connect_timeout=connect_timeout
        )
        self.keys = Keys(prefix)

    @classmethod
    def from_settings(cls, settings: Settings) -> AsyncProducer:
        return cls(
            settings.redis_url,
            prefix=settings.stream_prefix,
            socket_timeout=settings.redis_socket_timeout_s,
            connect_timeout=settings.redis_connect_timeout_s,
        )

    async def add(self, payloads: list[str]) -> None:
        """Append pre-serialised JSON payloads in one round trip, all or none (MULTI): a
        request is queued whole or refused whole, never half-accepted."""
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
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
