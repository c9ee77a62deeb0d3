"""The delivery agent: a small process that sends a client's journal to the API.

Run by :class:`~judgeserve.client.JudgeClient` as ``python -m judgeserve.client.agent``,
holding the journal's lock it inherits from the client. It first adopts journals of the
same run whose client and agent are both gone, then tails its own: batches lines into
requests (:mod:`.delivery`), retries with exponential backoff (honouring Retry-After),
moves on to the next segment once one is done, and keeps going for ``--orphan-grace``
seconds after its trainer dies. Delivery is at least once; the API side is idempotent by
sample id.

Nothing in the journal stops an agent: a line that is not JSON (a torn write followed by
more lines) is reported and skipped; a torn last line (the writer died mid-write) is
reported once the journal is otherwise delivered; a journal that cannot be adopted is
left for the next client. Signal handlers only set flags: the wake-up comes through
``signal.set_wakeup_fd``, since a handler that takes a lock can interrupt the same lock's
holder (a second signal during the first handler's ``Event.set``) and hang the agent.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import select
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from .delivery import Retry, Sender, plan
from .journal import (
    Files,
    create_locked,
    read_position,
    record_error,
    remove,
    segments,
    write_position,
)

log = logging.getLogger("judgeserve.agent")

MAX_LINES = 256
IDLE_MIN_S = 0.02
IDLE_MAX_S = 0.25


def _parse(line: bytes) -> dict[str, Any] | str:
    """A journal line as a request, or why it is not one."""
    try:
        req = json.loads(line)
    except ValueError as e:
        return f"journal line is not JSON ({e}); {len(line)} bytes skipped"
    if not (isinstance(req, dict) and isinstance(req.get("path"), str) and isinstance(req.get("body"), dict)):
        return f"journal line is not a request; {len(line)} bytes skipped"
    return req


class Agent:
    def __init__(self, http: httpx.Client, max_backoff: float) -> None:
        self.sender = Sender(http, max_backoff)
        self.max_backoff = max_backoff
        self._wake_r, wake_w = os.pipe()
        for fd in (self._wake_r, wake_w):
            os.set_blocking(fd, False)
        self.wake_fd = wake_w

    def deliver(self, files: Files, *, follow: Callable[[], bool], patient: bool = True) -> bool:
        """Send the journal from its position; keep tailing it while ``follow()`` is true.

        Returns True once everything written is delivered; False when ``patient`` is
        off and the API is failing (the journal stays for later).
        """
        seg, offset = read_position(files)
        sealed: int | None = None  # a segment known to be complete
        fh: BinaryIO | None = None
        backoff = 0.0
        idle = IDLE_MIN_S
        try:
            while True:
                if fh is None:
                    later = [n for n in segments(files) if n >= seg]
                    if not later:
                        if follow():  # the writer has not made it yet
                            self._sleep(idle)
                            continue
                        return True
                    if later[0] != seg:
                        seg, offset = later[0], 0
                    fh = open(files.segment(seg), "rb")  # noqa: SIM115 (closed below)
                fh.seek(offset)
                lines: list[tuple[int, dict[str, Any] | str]] = []
                pos = offset
                for _ in range(MAX_LINES):
                    ln = fh.readline()
                    if not ln.endswith(b"\n"):
                        break  # a line still being written is read next time
                    pos += len(ln)
                    lines.append((pos, _parse(ln)))
                if not lines:
                    if sealed != seg and any(n > seg for n in segments(files)):
                        # The writer has moved on, so nothing more comes to this segment:
                        # read it once more for lines written just before it did.
                        sealed = seg
                        continue
                    tail = os.fstat(fh.fileno()).st_size - offset
                    if sealed == seg:
                        if tail:
                            _torn(files, seg, tail)
                        write_position(files, (seg + 1, 0))
                        files.segment(seg).unlink(missing_ok=True)
                        fh.close()
                        fh, seg, offset = None, seg + 1, 0
                        continue
                    if follow():
                        # Polling backs off while the trainer is quiet (a flush wakes it).
                        self._sleep(idle)
                        idle = min(idle * 2, IDLE_MAX_S)
                        continue
                    if tail:
                        _torn(files, seg, tail)
                    return True
                idle = IDLE_MIN_S
                try:
                    for req in plan(lines):
                        if "bad" in req:
                            log.error("%s, segment %d: %s", files.name, seg, req["bad"])
                            record_error(files, {"status": None, "detail": req["bad"], "path": None, "samples": []})
                        else:
                            self.sender.send(req, files)
                        if req["end"] is not None:
                            offset = req["end"]
                            write_position(files, (seg, offset))
                except Retry as r:
                    if not patient:
                        return False
                    follow()  # lets an orphaned agent's grace period end it
                    backoff = min(max(backoff * 2, 0.2), self.max_backoff)
                    self._sleep(r.after if r.after is not None else backoff)
                    continue
                backoff = 0.0
        finally:
            if fh is not None:
                fh.close()

    def _sleep(self, seconds: float) -> None:
        # A signal (flush, close) writes to the wake-up pipe and ends the wait early.
        select.select([self._wake_r], [], [], max(seconds, 0.0))
        try:
            while os.read(self._wake_r, 512):
                pass
        except BlockingIOError:
            pass


def _torn(files: Files, seg: int, size: int) -> None:
    detail = (f"journal segment {seg} ends in a torn line of {size} bytes (its writer died "
              "while writing it); that request was lost before it was recorded")
    log.error("%s: %s", files.name, detail)
    record_error(files, {"status": None, "detail": detail, "path": None, "samples": []})


def _upgrade_legacy(directory: Path) -> None:
    """Give journals written before segments and lock files (``<id>.jsonl``, locked by
    their agent itself, with a one-number ``<id>.offset``) today's layout, so they are
    adopted like any other instead of lying there forever."""
    for old in sorted(directory.glob("*.jsonl")):
        name = old.name[: -len(".jsonl")]
        if "." in name:
            continue  # a segment: <id>.<n>.jsonl
        try:
            fd = os.open(old, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its old agent still runs
            files = Files(directory, name)
            lock = create_locked(files.lock)  # adopters skip it until we are done here
            try:
                offset = files.offset.read_text().strip() if files.offset.exists() else "0"
                write_position(files, (0, int(offset) if offset.isdigit() else 0))
                os.rename(old, files.segment(0))
            finally:
                os.close(lock)
            log.info("journal %s moved to segments, to be adopted", name)
        except OSError as e:
            log.error("could not take over the old journal %s: %s", old, e)
        finally:
            os.close(fd)


def adopt(agent: Agent, own: Files) -> None:
    """Deliver journals of this run whose client and agent are both gone."""
    _upgrade_legacy(own.directory)
    for lock in sorted(own.directory.glob("*.lock")):
        name = lock.name[: -len(".lock")]
        if name == own.name:
            continue
        try:
            fd = os.open(lock, os.O_RDWR)
        except FileNotFoundError:
            continue  # delivered and removed meanwhile
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live client or agent holds it
            try:
                if os.fstat(fd).st_ino != os.stat(lock).st_ino:
                    continue  # removed (and maybe made again) while we waited
            except FileNotFoundError:
                continue
            files = Files(own.directory, name)
            log.info("adopting %s", name)
            try:
                done = agent.deliver(files, follow=lambda: False, patient=False)
            except Exception:  # one unreadable journal must not stop this agent
                log.exception("could not adopt %s; it stays for the next client", name)
                continue
            if done:
                remove(files)
            else:
                log.warning("the API is unavailable; %s stays for the next client", name)
        finally:
            os.close(fd)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", type=Path, required=True)
    ap.add_argument("--id", required=True)
    ap.add_argument("--lock-fd", type=int, required=True)
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
    files = Files(args.dir, args.id)
    closing: dict[str, Any] = {"flag": False, "orphaned_at": None}

    def on_close(*_: Any) -> None:
        closing["flag"] = True  # only a flag: see the module docstring

    signal.set_wakeup_fd(agent.wake_fd)
    signal.signal(signal.SIGUSR1, lambda *_: None)  # flush(): the wake-up alone retries now
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
                log.error("giving up after %.0fs; %s stays for the next client", args.orphan_grace, files.name)
                os._exit(1)
            return False
        return True

    # The client locked the journal before starting us; the inherited descriptor keeps it
    # locked while we live, even after the trainer is gone.
    adopt(agent, files)
    # Tails the journal until the client closes or dies, then drains what is left.
    agent.deliver(files, follow=alive)
    # A late flush() or close() must not kill us mid-cleanup: Python restores the default
    # action (terminate) of its handled signals as it exits, but leaves ignored ones.
    for signum in (signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(signum, signal.SIG_IGN)
    remove(files)
    os.close(args.lock_fd)


if __name__ == "__main__":
    main()
