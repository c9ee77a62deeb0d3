"""``JudgeClient``: the synchronous SDK a training loop calls."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from ..exceptions import APIError, ClientError
from ..schema import Alert, SampleIn
from ..settings import get_settings
from .sender import Sender
from .spool import Spool

__all__ = ["JudgeClient"]

log = logging.getLogger(__name__)
SampleLike = Mapping[str, Any] | SampleIn


def _sample_dict(s: SampleLike) -> dict[str, Any]:
    if isinstance(s, SampleIn):
        d = s.model_dump(exclude_defaults=True)
        d["id"] = s.id
    elif isinstance(s, Mapping):
        d = {k: v for k, v in s.items() if k not in ("run", "step", "checkpoint", "created")}
    else:
        raise TypeError(f"a sample must be a dict or a Sample, not {type(s).__name__}")
    if "completion" not in d:
        raise ClientError("every sample needs a 'completion'")
    d.setdefault("prompt", "")
    if not d.get("id"):
        # Made here, on submit, so every retry of this sample carries the same id.
        d["id"] = uuid.uuid4().hex
    return d


class JudgeClient:
    """Send generations and trainer metrics to judgeserve without waiting on it.

    ``submit`` and ``log_metrics`` return at once; a background thread batches,
    sends, retries with backoff and spools to disk while the API is unreachable.
    """

    def __init__(
        self,
        url: str | None = None,
        run: str = "default",
        token: str | None = None,
        rubrics: list[str] | None = None,
        *,
        timeout: float = 10.0,
        spool_dir: str | Path | None = None,
        linger_s: float = 0.05,
        max_backoff_s: float = 30.0,
    ) -> None:
        settings = get_settings()
        self.url = (url or settings.api_url).rstrip("/")
        self.run = run
        self.rubrics = rubrics
        token = token or settings.api_token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        self.errors: list[APIError] = []
        self.spool = Spool(Path(spool_dir) if spool_dir else settings.spool_dir, run)
        self._sender = Sender(
            self._http,
            self.spool,
            linger_s=linger_s,
            max_backoff_s=max_backoff_s,
            on_rejected=self.errors.append,
        )
        self._sender.start()
        self._closed = False

    def submit(
        self, step: int, samples: Iterable[SampleLike], checkpoint: str | None = None
    ) -> list[str]:
        """Queue samples generated at ``step``; returns their ids (made here if absent)."""
        self._check_open()
        items = [_sample_dict(s) for s in samples]
        if not items:
            return []
        body: dict[str, Any] = {"step": int(step), "samples": items}
        if checkpoint is not None:
            body["checkpoint"] = str(checkpoint)
        if self.rubrics is not None:
            body["rubrics"] = self.rubrics
        self._sender.put({"path": f"/v1/runs/{self.run}/samples", "body": body})
        return [d["id"] for d in items]

    def log_metrics(self, step: int, **values: float) -> None:
        """Queue trainer metrics (loss, learning_rate, ...) for ``step``."""
        self._check_open()
        if values:
            body = {"step": int(step), "values": {k: float(v) for k, v in values.items()}}
            self._sender.put({"path": f"/v1/runs/{self.run}/metrics", "body": body})

    def alerts(self, state: str | None = "open") -> list[Alert]:
        """Alerts of this run, fetched now (raises on an unreachable API)."""
        params = {"state": state} if state else {}
        try:
            resp = self._http.get(f"/v1/runs/{self.run}/alerts", params=params)
        except httpx.HTTPError as e:
            raise ClientError(f"judgeserve unreachable at {self.url}: {e}") from e
        if resp.status_code >= 400:
            raise APIError(resp.status_code, resp.text)
        return [Alert.model_validate(a) for a in resp.json()["alerts"]]

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until everything submitted so far is delivered; False on timeout."""
        return self._sender.wait_idle(timeout)

    def close(self, timeout: float | None = 30.0) -> None:
        """Flush, then stop the sender; what could not be sent stays spooled on disk."""
        if self._closed:
            return
        self._closed = True
        self.flush(timeout)
        self._sender.stop()
        self._sender.join(timeout=5)
        self.spool.close()
        self._http.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ClientError("this JudgeClient is closed")

    def __enter__(self) -> JudgeClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
