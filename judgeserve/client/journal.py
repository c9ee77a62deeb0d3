"""The journal: append-only files per client where ``submit`` writes and the agent reads.

Layout in ``<spool_dir>/<run>/``, for a client whose id is ``<id>``::

    <id>.lock           held (flock) by the client and its agent while either lives
    <id>.000000.jsonl   the journal, one request per line, in segments: the writer starts
    <id>.000001.jsonl   the next one once a segment passes SEGMENT_BYTES, and the agent
                        deletes a segment once it is delivered and the next one exists
    <id>.offset         "<segment> <bytes>": how far the API has accepted, written by the agent
    <id>.errors         what could not be delivered, and why, one JSON line each
    <id>.log            the agent's own log

Writing a line costs the trainer one ``orjson.dumps`` and one ``write(2)``; everything
slow (HTTP, retries, backoff) happens in the agent process, off the trainer's GIL.

Whoever holds ``<id>.lock`` owns the id's files. The client takes the lock before the
file has its name and before its agent exists (the agent inherits it), so another agent
of the same run (a second process, another DDP rank) can never adopt a live journal;
once both are gone the lock is free, and the next client of the run adopts what is left.
``flock`` does not lock across the hosts of a network filesystem: the spool directory must
be local, and :func:`network_filesystem` tells when it is not.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ..exceptions import ClientError

__all__ = [
    "SEGMENT_BYTES",
    "Files",
    "Journal",
    "Position",
    "read_position",
    "write_position",
    "segments",
    "remove",
    "record_error",
    "read_errors",
    "network_filesystem",
    "create_locked",
]

SEGMENT_BYTES = 64 * 1024 * 1024
Position = tuple[int, int]  # (segment, bytes of it)
# Filesystems on which flock(2) does not exclude another host's processes.
NETWORK_FS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "9p", "lustre", "gpfs",
     "beegfs", "ceph", "glusterfs", "fuse.glusterfs", "fuse.sshfs", "fuse.s3fs",
     "fuse.gcsfuse", "fuse.juicefs", "virtiofs"}
)


@dataclass(frozen=True)
class Files:
    """The paths of one client's journal."""

    directory: Path
    name: str

    @property
    def lock(self) -> Path:
        return self.directory / f"{self.name}.lock"

    def segment(self, n: int) -> Path:
        return self.directory / f"{self.name}.{n:06d}.jsonl"

    @property
    def offset(self) -> Path:
        return self.directory / f"{self.name}.offset"

    @property
    def errors(self) -> Path:
        return self.directory / f"{self.name}.errors"

    @property
    def log(self) -> Path:
        return self.directory / f"{self.name}.log"


def segments(files: Files) -> list[int]:
    """Numbers of the segments on disk, in order."""
    out = []
    for p in files.directory.glob(f"{files.name}.*.jsonl"):
        number = p.name[len(files.name) + 1 : -len(".jsonl")]
        if number.isdigit():
            out.append(int(number))
    return sorted(out)


def read_position(files: Files) -> Position:
    try:
        seg, offset = files.offset.read_text().split()
        return int(seg), int(offset)
    except (FileNotFoundError, ValueError):
        return (0, 0)


def write_position(files: Files, position: Position) -> None:
    tmp = files.offset.with_suffix(".offset.tmp")
    tmp.write_text(f"{position[0]} {position[1]}")
    os.replace(tmp, files.offset)  # atomic: a reader never sees a half-written position


def record_error(files: Files, entry: dict[str, Any]) -> None:
    """Append one undeliverable thing to the errors file (``status`` None: not the API's)."""
    with open(files.errors, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry) + "\n")


def read_errors(files: Files) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in (files.errors.with_suffix(".errors.done"), files.errors):
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            continue
        out += [json.loads(ln) for ln in text.splitlines() if ln.strip()]
    return out


def remove(files: Files) -> None:
    """Delete a fully delivered journal; the caller holds its lock, and the lock goes last."""
    for n in segments(files):
        files.segment(n).unlink(missing_ok=True)
    files.offset.unlink(missing_ok=True)
    if files.errors.exists():
        files.errors.rename(files.errors.with_suffix(".errors.done"))
    files.lock.unlink(missing_ok=True)


def network_filesystem(path: Path, mounts: Path = Path("/proc/self/mounts")) -> str | None:
    """The type of the network filesystem ``path`` lies on, or None when it is local (or
    the mount table cannot be read, as on macOS)."""
    try:
        table = mounts.read_text()
    except OSError:
        return None
    target = os.path.realpath(path)
    best, fstype = "", ""
    for line in table.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, fstype = point, fields[2]
    if fstype in NETWORK_FS or fstype.startswith("nfs"):
        return fstype
    return None


class Journal:
    """The writing end, owned by one :class:`~judgeserve.client.JudgeClient`."""

    def __init__(self, directory: Path, name: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.files = Files(directory, name)
        self.lock_fd = create_locked(self.files.lock)
        self.segment = 0
        self.size = 0
        self._fd = _open_segment(self.files.segment(0))
        self._lock = threading.Lock()

    @property
    def position(self) -> Position:
        """Where the journal ends now: what :meth:`delivered` must reach for a flush."""
        return (self.segment, self.size)

    def append(self, request: dict[str, Any]) -> Position:
        """Append one request; returns the journal's end after it (the flush target)."""
        line = orjson.dumps(request) + b"\n"
        with self._lock:
            if self.size and self.size + len(line) > SEGMENT_BYTES:
                self._rotate()
            self._write(line)
            self.size += len(line)
            return self.position

    def _write(self, line: bytes) -> None:
        view = memoryview(line)
        try:
            while view:  # write(2) may write less than asked (a full disk, a signal)
                view = view[os.write(self._fd, view) :]
        except OSError as e:
            # Take back the part that made it, so the journal never holds a torn line.
            try:
                os.ftruncate(self._fd, self.size)
            except OSError:
                pass
            raise ClientError(
                f"could not write the journal {self.files.segment(self.segment)}: {e}; "
                "this submit was not recorded"
            ) from e

    def _rotate(self) -> None:
        # The next segment exists before this one is closed, and nothing is written to
        # this one afterwards: its existence tells the agent this one is complete.
        fd = _open_segment(self.files.segment(self.segment + 1))
        os.close(self._fd)
        self._fd = fd
        self.segment += 1
        self.size = 0

    def delivered(self) -> Position:
        return read_position(self.files)

    def errors(self) -> list[dict[str, Any]]:
        return read_errors(self.files)

    def close(self) -> None:
        os.close(self._fd)
        os.close(self.lock_fd)  # the agent, if alive, still holds the lock


def _open_segment(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)


def create_locked(path: Path) -> int:
    """Create ``path`` already locked: locked under a name adopters do not look at, then
    renamed, so no other process ever sees it unlocked."""
    tmp = path.with_name(path.name + ".new")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.rename(tmp, path)
    return fd
