"""``AsyncJudgeClient``: the same SDK for asyncio code, never blocking the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from ..schema import Alert
from .sync import JudgeClient, SampleLike

__all__ = ["AsyncJudgeClient"]


class AsyncJudgeClient:
    """Wraps :class:`JudgeClient`: submitting only enqueues, so it is safe on the loop;
    waiting calls (flush, alerts, close) run in a thread."""

    def __init__(self, url: str | None = None, run: str = "default", **kwargs: Any) -> None:
        self._client = JudgeClient(url, run, **kwargs)

    async def submit(
        self,
        step: int,
        samples: Iterable[SampleLike],
        checkpoint: str | None = None,
        *,
        expected: int | None = None,
    ) -> list[str]:
        return self._client.submit(step, samples, checkpoint, expected=expected)

    async def log_metrics(self, step: int, **values: float) -> None:
        self._client.log_metrics(step, **values)

    async def log_summary(self, **values: float) -> None:
        self._client.log_summary(**values)

    async def set_probes(self, probes: Any, generation: Any = None) -> str:
        """See :meth:`JudgeClient.set_probes` (reading a probe file runs in a thread)."""
        return await asyncio.to_thread(self._client.set_probes, probes, generation)

    async def submit_checkpoint(self, step: int, path: Any, **kwargs: Any) -> None:
        """See :meth:`JudgeClient.submit_checkpoint`."""
        self._client.submit_checkpoint(step, path, **kwargs)

    async def alerts(self, state: str | None = "open") -> list[Alert]:
        return await asyncio.to_thread(self._client.alerts, state)

    async def best(self) -> dict[str, Any] | None:
        """See :meth:`JudgeClient.best`."""
        return await asyncio.to_thread(self._client.best)

    async def wait(self, step: int, timeout: float | None = 120.0) -> bool:
        """See :meth:`JudgeClient.wait`."""
        return await asyncio.to_thread(self._client.wait, step, timeout)

    async def flush(self, timeout: float | None = 30.0) -> bool:
        return await asyncio.to_thread(self._client.flush, timeout)

    async def close(self, timeout: float | None = 30.0) -> None:
        await asyncio.to_thread(self._client.close, timeout)

    async def __aenter__(self) -> AsyncJudgeClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
