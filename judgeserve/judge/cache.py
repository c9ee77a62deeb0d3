"""The verdict cache: an identical (judge version, rendered prompt) is judged once.

A collapsed checkpoint says the same thing 64 times; a probe answered the same way at
step 100 and step 200 is asked about again; a redelivered batch is scored again. Each of
those is one judge call, not many: :class:`~judgeserve.judge.verdicts.Judge` looks every
prompt up by :func:`cache_key` first, sends only the distinct prompts nobody has asked
about yet, and keeps their verdicts.

The key is the judge version (:class:`~judgeserve.judge.version.JudgeVersion`: model,
backend, prompt hash, rubric version) and the rendered prompt with its per-request fence
replaced by a fixed mark. The fence is a fresh random nonce per request (prompt
injection, :mod:`judgeserve.judge.prompt`) and by construction appears nowhere else in
the text, so two requests about the same text differ in the fence only, and which nonce
was drawn is noise the verdict should not follow (it moves a distribution in its last
digits at most).

:class:`RedisVerdictCache` is what workers share (one hash of verdicts and one sorted set
of last-use times, trimmed to ``max_entries``, least recently used first, in one Lua
script: Redis runs judgeserve's streams with ``noeviction``, so the cache bounds itself).
:class:`MemoryVerdictCache` is the same within one process. A cache that cannot be
reached is skipped (logged once): the judge answers anyway.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..keys import Keys
from .prompt import JudgePrompt
from .version import JudgeVersion

if TYPE_CHECKING:
    import redis

    from ..settings import Settings

__all__ = [
    "FENCE_MARK",
    "cache_key",
    "VerdictCache",
    "MemoryVerdictCache",
    "RedisVerdictCache",
]

log = logging.getLogger(__name__)
FENCE_MARK = "<fence>"
# Bumped when what a cached verdict holds changes shape: old entries are then not read.
CACHE_FORMAT = "1"


def cache_key(version: JudgeVersion, prompt: JudgePrompt) -> str:
    """The cache key of asking ``version`` this ``prompt``: equal exactly when the judge
    would be asked the same thing (same judge version, same text apart from the fence)."""
    h = hashlib.sha256()
    for part in (
        CACHE_FORMAT,
        version.model,
        version.backend,
        version.prompt_hash,
        version.rubric_version,
        prompt.system.replace(prompt.fence, FENCE_MARK),
        prompt.user.replace(prompt.fence, FENCE_MARK),
        prompt.answer_prefix,
        *prompt.labels,
    ):
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()


@runtime_checkable
class VerdictCache(Protocol):
    """Where verdicts are kept between calls; values are JSON-able dicts."""

    def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The verdicts held for ``keys`` (absent keys are left out); marks them used."""
        ...

    def put_many(self, items: Mapping[str, dict[str, Any]]) -> int:
        """Keep these verdicts; returns how many older ones were evicted to stay in bound."""
        ...

    def __len__(self) -> int: ...


class MemoryVerdictCache:
    """A bounded least-recently-used cache in this process."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        out = {}
        with self._lock:
            for k in keys:
                if k in self._items:
                    self._items.move_to_end(k)
                    out[k] = self._items[k]
        return out

    def put_many(self, items: Mapping[str, dict[str, Any]]) -> int:
        evicted = 0
        with self._lock:
            for k, v in items.items():
                self._items[k] = v
                self._items.move_to_end(k)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)
                evicted += 1
        return evicted

    def __len__(self) -> int:
        return len(self._items)


# Adds entries, stamps them used, then drops the least recently used over the bound; one
# script so that concurrent workers never leave the hash and the order out of step.
_PUT = """
local now = tonumber(ARGV[2])
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  redis.call('ZADD', KEYS[2], now, ARGV[i])
end
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[1])
if over <= 0 then return 0 end
local old = redis.call('ZPOPMIN', KEYS[2], over)
for j = 1, #old, 2 do redis.call('HDEL', KEYS[1], old[j]) end
return over
"""


class RedisVerdictCache:
    """The verdict cache the workers share, in Redis, at most ``max_entries`` verdicts."""

    def __init__(
        self, client: redis.Redis, keys: Keys, max_entries: int, *, own_client: bool = False
    ) -> None:
        self.redis = client
        self.hash_key, self.lru_key = keys.verdicts, keys.verdicts_lru
        self.max_entries = max_entries
        self._own = own_client
        self._put: Any = client.register_script(_PUT)
        self._warned = False

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisVerdictCache:
        import redis

        # Timeouts: a partitioned Redis must not hang the judge (it answers without the cache).
        client = redis.Redis.from_url(
            settings.redis_url, socket_timeout=5.0, socket_connect_timeout=5.0
        )
        return cls(
            client, Keys(settings.stream_prefix), settings.verdict_cache_size, own_client=True
        )

    def _unreachable(self, e: Exception) -> None:
        if not self._warned:
            self._warned = True
            log.warning("verdict cache unreachable, judging without it: %s", e)

    def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        import redis

        if not keys:
            return {}
        try:
            values: Any = self.redis.hmget(self.hash_key, list(keys))
            found = {k: json.loads(v) for k, v in zip(keys, values, strict=True) if v is not None}
            if found:
                # XX: only touch entries still there (another worker may have evicted one).
                self.redis.zadd(self.lru_key, dict.fromkeys(found, time.time()), xx=True)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
            self._unreachable(e)
            return {}
        self._warned = False
        return found

    def put_many(self, items: Mapping[str, dict[str, Any]]) -> int:
        import redis

        if not items:
            return 0
        args: list[Any] = [self.max_entries, time.time()]
        for k, v in items.items():
            args += [k, json.dumps(v)]
        try:
            return int(self._put(keys=[self.hash_key, self.lru_key], args=args))
        except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
            self._unreachable(e)
            return 0

    def __len__(self) -> int:
        n: Any = self.redis.zcard(self.lru_key)
        return int(n)

    def clear(self) -> None:
        self.redis.delete(self.hash_key, self.lru_key)

    def close(self) -> None:
        if self._own:
            self.redis.close()
