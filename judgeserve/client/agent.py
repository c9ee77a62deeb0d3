"""The delivery agent: a small process that sends a client's journal to the API.

Run by :class:`~judgeserve.client.JudgeClient` as ``python -m judgeserve.client.agent``.
It batches journal lines into requests, retries with exponential backoff (honouring
Retry-After), records refused requests, and keeps going for ``--orphan-grace`` seconds
after its trainer dies. Delivery is at least once; the API side is idempotent by sample id.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from ..exceptions import RETRYABLE_STATUS
from .journal import paths, read_offset, write_offset

log = logging.getLogger("judgeserve.agent")

MAX_SAMPLES = 1000
MAX_CHARS = 8 * 1024 * 1024  # keep each request well under the API's body cap
MAX_LINES = 256
IDLE_MIN_S = 0.02
IDLE_MAX_S = 0.25


class Retry(Exception):
    def __init__(self, after: float | None = None) -> None:
        self.after = after


def plan(lines: list[tuple[int, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Turn journal lines (with the offset where each ends) into HTTP requests, in order.

    Consecutive sample lines for the same run/step/checkpoint are joined, within the API's
    limits. Each request carries ``end``: the journal offset that is fully delivered once
    it is accepted (None while a line is split over several requests), so a retry resends
    only what was not accepted — resending accepted samples would refill a full backlog.
    """
    out: list[dict[str, Any]] = []
    cur: dict[str, Any] | None = None
    for end, req in lines:
        body = req["body"]
        if "samples" not in body:
            cur = None
            out.append({"method": req.get("method", "POST"), "path": req["path"], "body": body, "end": end})
            continue
        key = (
            req["path"], body["step"], body.get("checkpoint"), tuple(body.get("rubrics") or ()),
            body.get("expected"),
        )
        for s in body["samples"]:
            size = len(s.get("prompt", "")) + len(s.get("completion", "")) + len(s.get("reference") or "")
            if (
                cur is None
                or cur["key"] != key
                or len(cur["body"]["samples"]) >= MAX_SAMPLES
                or cur["chars"] + size > MAX_CHARS
            ):
                cur = {"path": req["path"], "body": {**body, "samples": []}, "chars": 0, "key": key, "end": None}
                out.append(cur)
            cur["body"]["samples"].append(s)
            cur["chars"] += size
        if cur is not None:
            cur["end"] = end
    return out


class Agent:
    def __init__(self, http: httpx.Client, max_backoff: float) -> None:
        self.http = http
        self.max_backoff = max_backoff
        self.wake = threading.Event()

    def send(self, req: dict[str, Any], journal: Path) -> None:
        try:
            resp = self.http.request(req.get("method", "POST"), req["path"], json=req["body"])
        except httpx.HTTPError as e:
            log.debug("send failed: %s", e)
            raise Retry() from e
        if resp.status_code < 300:
            return
        if resp.status_code in RETRYABLE_STATUS:
            after = resp.headers.get("retry-after", "")
            raise Retry(float(after) if after.isdigit() else None)
        # Refused for good (4xx): retrying cannot help; record it for the client to report.
        try:
            detail = resp.json().get("detail")
        except ValueError:
            detail = resp.text
        with open(paths(journal)[1], "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"status": resp.status_code, "detail": detail, "path": req["path"]}) + "\n")

    def deliver(
        self, journal: Path, fh: Any, *, follow: Callable[[], bool], patient: bool = True
    ) -> bool:
        """Send the journal from its offset; keep tailing it while ``follow()`` is true.

        Returns True once everything written is delivered; False when ``patient`` is
        off and the API is failing (the journal stays for later).
        """
        offset = read_offset(journal)
        backoff = 0.0
        idle = IDLE_MIN_S
        while True:
            fh.seek(offset)
            lines: list[tuple[int, dict[str, Any]]] = []
            pos = offset
            for _ in range(MAX_LINES):
                ln = fh.readline()
                if not ln.endswith(b"\n"):
                    break  # a line still being written is read next time
                pos += len(ln)
                lines.append((pos, json.loads(ln)))
            if not lines:
                if follow():
                    # Polling backs off while the trainer is quiet (a flush kicks it awake).
                    self._sleep(idle)
                    idle = min(idle * 2, IDLE_MAX_S)
                    continue
                return True
            idle = IDLE_MIN_S
            try:
                for req in plan(lines):
                    self.send(req, journal)
                    if req["end"] is not None:
                        offset = req["end"]
                        write_offset(journal, offset)
            except Retry as r:
                if not patient:
                    return False
                follow()  # lets an orphaned agent's grace period end it
                backoff = min(max(backoff * 2, 0.2), self.max_backoff)
                self._sleep(r.after if r.after is not None else backoff)
                continue
            backoff = 0.0

    def _sleep(self, seconds: float) -> None:
        # A signal handler setting the event ends the wait early (flush, close).
        self.wake.wait(seconds)
        self.wake.clear()


def _adopt(agent: Agent, own: Path) -> None:
    """Deliver journals left by clients whose agents died."""
    for other in sorted(own.parent.glob("*.jsonl")):
        if other == own:
            continue
        with open(other, "rb") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live agent owns it
            log.info("adopting %s", other)
            if agent.deliver(other, fh, follow=lambda: False, patient=False):
                _remove(other)


def _remove(journal: Path) -> None:
    offset_path, errors_path = paths(journal)
    for p in (journal, offset_path):
        p.unlink(missing_ok=True)
    if errors_path.exists():
        errors_path.rename(errors_path.with_suffix(".errors.done"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--journal", type=Path, required=True)
    ap.add_argument("--url", required=True)
    ap.add_argument("--parent", type=int, required=True)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--max-backoff", type=float, default=30.0)
    ap.add_argument("--orphan-grace", type=float, default=120.0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s judgeserve-agent %(message)s")

    token = os.environ.get("JUDGESERVE_AGENT_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    http = httpx.Client(base_url=args.url, headers=headers, timeout=args.timeout)
    agent = Agent(http, args.max_backoff)
    closing: dict[str, Any] = {"flag": False, "orphaned_at": None}

    def on_kick(*_: Any) -> None:
        agent.wake.set()  # flush(): retry now rather than after the backoff

    def on_close(*_: Any) -> None:
        closing["flag"] = True
        agent.wake.set()

    signal.signal(signal.SIGUSR1, on_kick)
    signal.signal(signal.SIGUSR2, on_close)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # journal stays for adoption
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1, signal.SIGUSR2})

    def alive() -> bool:
        if closing["flag"]:
            return False
        if os.getppid() != args.parent:  # the trainer died: finish what it wrote, then go
            if closing["orphaned_at"] is None:
                closing["orphaned_at"] = time.monotonic()
                log.warning("trainer %d gone; delivering what it left", args.parent)
            if time.monotonic() - closing["orphaned_at"] > args.orphan_grace:
                log.error("giving up after %.0fs; %s stays for the next client", args.orphan_grace, args.journal)
                os._exit(1)
            return False
        return True

    with open(args.journal, "rb") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        _adopt(agent, args.journal)
        # Tails the journal until the client closes or dies, then drains what is left.
        agent.deliver(args.journal, fh, follow=alive)
        _remove(args.journal)


if __name__ == "__main__":
    main()
