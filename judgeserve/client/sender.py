"""The background thread that batches, sends, retries and spools."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from ..exceptions import APIError
from .spool import Spool

log = logging.getLogger(__name__)

Request = dict[str, Any]  # {"path": "/v1/runs/r/samples", "body": {...}}
MAX_SAMPLES = 1000
MAX_CHARS = 8 * 1024 * 1024  # keep each request well under the API's body cap
RETRYABLE = {408, 425, 429, 500, 502, 503, 504}


class Sender(threading.Thread):
    """Drains the submit queue into HTTP requests; never blocks the caller."""

    def __init__(
        self,
        http: httpx.Client,
        spool: Spool,
        *,
        linger_s: float = 0.05,
        max_backoff_s: float = 30.0,
        on_rejected: Callable[[APIError], None] | None = None,
    ) -> None:
        super().__init__(name="judgeserve-sender", daemon=True)
        self.http = http
        self.spool = spool
        self.linger_s = linger_s
        self.max_backoff_s = max_backoff_s
        self.on_rejected = on_rejected
        self.inbox: queue.SimpleQueue[Request | None] = queue.SimpleQueue()
        self._pending = 0
        self._cv = threading.Condition()
        self._stopping = threading.Event()
        self._backoff = 0.0
        self._next_try = 0.0
        self.sent_requests = 0

    # -- called from the trainer's thread ------------------------------------------------

    def put(self, request: Request) -> None:
        with self._cv:
            self._pending += 1
        self.inbox.put(request)

    def wait_idle(self, timeout: float | None) -> bool:
        """True once everything put so far is delivered (spool included)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._next_try = 0.0  # a flush asks for a replay now, not after the backoff
        with self._cv:
            while self._pending > 0 or len(self.spool) > 0:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cv.wait(timeout=0.05 if left is None else min(left, 0.05))
                if not self.is_alive():
                    return self._pending == 0 and len(self.spool) == 0
        return True

    def stop(self) -> None:
        self._stopping.set()
        self.inbox.put(None)

    # -- the thread ----------------------------------------------------------------------

    def run(self) -> None:
        while True:
            if self._stopping.is_set() and self.inbox.empty():
                return
            batch = self._collect()
            for req in _merge(batch):
                self._deliver(req)
            with self._cv:
                self._pending -= len(batch)
                self._cv.notify_all()
            if len(self.spool) and time.monotonic() >= self._next_try:
                self._replay()

    def _collect(self) -> list[Request]:
        timeout = 0.2 if len(self.spool) else None
        try:
            first = self.inbox.get(timeout=timeout)
        except queue.Empty:
            return []
        items = [] if first is None else [first]
        deadline = time.monotonic() + self.linger_s
        while len(items) < 512:
            left = deadline - time.monotonic()
            try:
                item = self.inbox.get(timeout=max(left, 0)) if left > 0 else self.inbox.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                items.append(item)
        return items

    def _deliver(self, req: Request) -> None:
        if len(self.spool):
            # The API is known to be failing: keep order and don't pay a timeout per request.
            self.spool.append(req)
            return
        if not self._send(req):
            self.spool.append(req)
            self._schedule_retry()

    def _send(self, req: Request) -> bool:
        """True when the API took it (or refused it for good); False to retry later."""
        try:
            resp = self.http.post(req["path"], json=req["body"])
        except httpx.HTTPError as e:
            log.debug("send failed: %s", e)
            return False
        if resp.status_code < 300:
            self.sent_requests += 1
            return True
        if resp.status_code in RETRYABLE:
            retry_after = resp.headers.get("retry-after")
            if retry_after and retry_after.isdigit():
                self._next_try = time.monotonic() + float(retry_after)
            return False
        # A 4xx other than the above will not get better by retrying: report it.
        try:
            detail = resp.json().get("detail")
        except ValueError:
            detail = resp.text
        err = APIError(resp.status_code, detail)
        log.error("judgeserve rejected %s: %s", req["path"], err)
        if self.on_rejected:
            self.on_rejected(err)
        return True

    def _schedule_retry(self) -> None:
        self._backoff = min(max(self._backoff * 2, 0.2), self.max_backoff_s)
        self._next_try = max(self._next_try, time.monotonic() + self._backoff)

    def _replay(self) -> None:
        pending = self.spool.read()
        for i, req in enumerate(pending):
            if self._stopping.is_set() and not self.inbox.empty():
                break
            if not self._send(req):
                self.spool.replace(pending[i:])
                self._schedule_retry()
                return
        self.spool.replace([])
        self._backoff = 0.0
        with self._cv:
            self._cv.notify_all()


def _merge(batch: list[Request]) -> list[Request]:
    """Join sample requests for the same path/step/checkpoint, within the API's limits."""
    out: list[Request] = []
    open_: dict[tuple[Any, ...], Request] = {}
    for req in batch:
        body = req["body"]
        if "samples" not in body:
            out.append(req)
            continue
        key = (req["path"], body["step"], body.get("checkpoint"), tuple(body.get("rubrics") or ()))
        for s in body["samples"]:
            cur = open_.get(key)
            size = len(s.get("prompt", "")) + len(s.get("completion", "")) + len(
                s.get("reference") or ""
            )
            if cur is None or len(cur["body"]["samples"]) >= MAX_SAMPLES or (
                cur["_chars"] + size > MAX_CHARS
            ):
                cur = {"path": req["path"], "body": {**body, "samples": []}, "_chars": 0}
                open_[key] = cur
                out.append(cur)
            cur["body"]["samples"].append(s)
            cur["_chars"] += size
    for r in out:
        r.pop("_chars", None)
    return out
