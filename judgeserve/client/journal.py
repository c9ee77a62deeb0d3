"""The journal: an append-only file per client where ``submit`` writes and the agent reads.

Layout in ``<spool_dir>/<run>/``::

    <id>.jsonl     one request per line, appended by the trainer's process
    <id>.offset    bytes of the journal the API has accepted, written by the agent
    <id>.errors    requests the API refused for good (4xx), one JSON line each

Writing a line costs the trainer one ``orjson.dumps`` and one ``write(2)``; everything
slow (HTTP, retries, backoff) happens in the agent process, off the trainer's GIL.
A journal whose agent died stays on disk and is adopted by the next client of the run.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import orjson

__all__ = ["Journal", "read_offset", "write_offset", "paths"]


def paths(journal: Path) -> tuple[Path, Path]:
    return journal.with_suffix(".offset"), journal.with_suffix(".errors")


def read_offset(journal: Path) -> int:
    try:
        return int(paths(journal)[0].read_text() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def write_offset(journal: Path, offset: int) -> None:
    target = paths(journal)[0]
    tmp = target.with_suffix(".offset.tmp")
    tmp.write_text(str(offset))
    os.replace(tmp, target)  # atomic: a reader never sees a half-written number


class Journal:
    """The writing end, owned by one :class:`~judgeserve.client.JudgeClient`."""

    def __init__(self, directory: Path, name: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{name}.jsonl"
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._lock = threading.Lock()
        self.written = 0

    def append(self, request: dict[str, Any]) -> int:
        """Append one request; returns the journal size after it (the flush target)."""
        line = orjson.dumps(request) + b"\n"
        with self._lock:
            os.write(self._fd, line)
            self.written += len(line)
            return self.written

    def delivered(self) -> int:
        return read_offset(self.path)

    def errors(self) -> list[dict[str, Any]]:
        try:
            text = paths(self.path)[1].read_text()
        except FileNotFoundError:
            return []
        return [json.loads(ln) for ln in text.splitlines() if ln.strip()]

    def close(self) -> None:
        os.close(self._fd)
