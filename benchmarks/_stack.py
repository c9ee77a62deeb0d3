"""Starts a real API process for benchmarks, on its own Redis database and key prefix."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import httpx
import redis

# The API processes run with auth on (the default): each makes or takes the local token in
# this private data directory, where the SDK in this process finds it too (never the
# user's own). Raw HTTP clients send auth_headers().
os.environ["JUDGESERVE_DATA_DIR"] = tempfile.mkdtemp(prefix="judgeserve-bench-data-")


def auth_headers() -> dict[str, str]:
    from judgeserve.local_token import read_token, token_path

    token = read_token(token_path(Path(os.environ["JUDGESERVE_DATA_DIR"])))
    assert token, "no local token: start an API first"
    return {"Authorization": f"Bearer {token}"}


WORDS = ["the", "model", "answers", "every", "question", "with", "a", "fluent", "and", "confident", "paragraph", "about", "training", "data", "loss", "curves", "and", "checkpoints", "that", "look", "healthy"]


def text(n_tokens: int, seed: int = 0) -> str:
    return " ".join(WORDS[(seed + i * 7) % len(WORDS)] for i in range(n_tokens))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"{proc.args} did not start")
        time.sleep(0.1)


@contextmanager
def judgeserve_processes(
    command: str = "api",
    env: dict[str, str] | None = None,
    workers: int = 0,
    redis_db: int = 13,
) -> Iterator[str]:
    """``judgeserve api`` (or ``up``) plus ``workers`` worker processes, on their own Redis
    key prefix (and a temporary SQLite store unless ``env`` names one); yields the URL."""
    port = free_port()
    prefix = f"bench{uuid.uuid4().hex[:6]}"
    redis_url = f"redis://127.0.0.1:6379/{redis_db}"
    full = {
        **os.environ,
        "JUDGESERVE_REDIS_URL": redis_url,
        "JUDGESERVE_STREAM_PREFIX": prefix,
        "JUDGESERVE_DATABASE_URL": f"sqlite:///{tempfile.mkdtemp(prefix='judgeserve-bench-')}/bench.db",
        **(env or {}),
    }
    cli = [sys.executable, "-m", "judgeserve.cli"]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = [subprocess.Popen([*cli, command, "--port", str(port)], env=full, **quiet)]
    procs += [subprocess.Popen([*cli, "worker"], env=full, **quiet) for _ in range(workers)]
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, procs[0])
        yield url
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=60)
        r = redis.Redis.from_url(redis_url)
        for key in r.scan_iter(f"{prefix}:*"):
            r.delete(key)
        r.close()


def api_process(redis_db: int = 13) -> AbstractContextManager[str]:
    return judgeserve_processes("api", redis_db=redis_db)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def table(rows: list[tuple[str, str, str]]) -> None:
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    for i, r in enumerate(rows):
        print("  ".join(c.ljust(w[j]) for j, c in enumerate(r)))
        if i == 0:
            print("  ".join("-" * x for x in w))
