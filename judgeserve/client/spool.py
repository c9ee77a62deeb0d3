"""A local, append-only file of requests the API has not accepted yet.

Requests go to disk before any retry, so a trainer that crashes while the API is down
loses nothing: the next client for the same run adopts the orphaned spool files.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import uuid
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)


class Spool:
    """Spooled requests of one run; this process's file is locked while it is open."""

    def __init__(self, directory: Path, run: str) -> None:
        self.dir = Path(directory) / run
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / f"{uuid.uuid4().hex}.jsonl"
        self._fh: IO[str] = open(self.path, "a+", encoding="utf-8")
        fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._count = 0
        self._adopt_orphans()

    def _adopt_orphans(self) -> None:
        for other in sorted(self.dir.glob("*.jsonl")):
            if other == self.path:
                continue
            try:
                with open(other, "r+", encoding="utf-8") as fh:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    lines = [ln for ln in fh.read().splitlines() if ln.strip()]
                    for ln in lines:
                        self._fh.write(ln + "\n")
                    self._fh.flush()
                    os.fsync(self._fh.fileno())
                    self._count += len(lines)
                    other.unlink()
                    if lines:
                        log.info("adopted %d spooled requests from %s", len(lines), other)
            except BlockingIOError:
                continue  # another live client owns it
            except OSError as e:
                log.warning("cannot adopt spool file %s: %s", other, e)

    def __len__(self) -> int:
        return self._count

    def append(self, request: dict[str, Any]) -> None:
        self._fh.write(json.dumps(request, separators=(",", ":")) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._count += 1

    def read(self) -> list[dict[str, Any]]:
        self._fh.seek(0)
        out = []
        for ln in self._fh.read().splitlines():
            if ln.strip():
                try:
                    out.append(json.loads(ln))
                except json.JSONDecodeError:
                    log.error("skipping a corrupt spool line in %s", self.path)
        return out

    def replace(self, remaining: list[dict[str, Any]]) -> None:
        """Keep only ``remaining`` (after a replay delivered the rest)."""
        self._fh.seek(0)
        self._fh.truncate()
        for r in remaining:
            self._fh.write(json.dumps(r, separators=(",", ":")) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._count = len(remaining)

    def close(self) -> None:
        empty = self._count == 0
        fcntl.flock(self._fh, fcntl.LOCK_UN)
        self._fh.close()
        if empty:
            self.path.unlink(missing_ok=True)
        else:
            log.warning("%d requests stay spooled in %s for the next client", self._count, self.path)
