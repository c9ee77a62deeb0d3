"""Shared fixtures: a real Redis (an empty database index per test), real stores, servers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import uvicorn

from judgeserve.app import create_app
from judgeserve.settings import Settings, get_settings
from judgeserve.store import Store
from judgeserve.worker import Worker

REDIS_HOST = os.environ.get("JUDGESERVE_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("JUDGESERVE_TEST_REDIS_PORT", "6379"))
PG_URL = os.environ.get(
    "JUDGESERVE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


CLAIM_KEY = "judgeserve:test-session"
CLAIM_TTL_S = 6 * 3600


@pytest.fixture(scope="session")
def redis_db() -> Iterator[int]:
    """A Redis database index this session claims for itself (as rq picks an empty one), so
    tests never touch a developer's data nor another test session's running beside it."""
    claim = f"{os.getpid()}-{uuid.uuid4().hex}"
    for db in range(15, 0, -1):
        r = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)
        try:
            if _take_over_dead_claim(r, claim) or (
                r.dbsize() == 0 and r.set(CLAIM_KEY, claim, nx=True, ex=CLAIM_TTL_S)
            ):
                try:
                    yield db
                finally:
                    r.flushdb()
                    r.close()
                return
        except redis.ConnectionError as e:
            pytest.fail(f"Redis not reachable at {REDIS_HOST}:{REDIS_PORT}: {e}")
        r.close()
    pytest.fail("no empty Redis database index to test in")


# Swap the claim only if it is still the dead session's, so two sessions never both take it.
_SWAP_CLAIM = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('set', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""


def _take_over_dead_claim(r: redis.Redis, claim: str) -> bool:
    """Take a database whose claiming session died without its teardown (killed by a timeout,
    a mutmut child that crashed): on this machine its pid no longer runs. Its keys go."""
    owner = r.get(CLAIM_KEY)
    if not isinstance(owner, bytes):
        return False
    try:
        os.kill(int(owner.split(b"-")[0]), 0)
        return False
    except ProcessLookupError:
        pass
    except (ValueError, PermissionError):
        return False
    if not r.eval(_SWAP_CLAIM, 1, CLAIM_KEY, owner.decode(), claim, str(CLAIM_TTL_S)):
        return False
    for key in r.scan_iter(count=1000):
        if key != CLAIM_KEY.encode():
            r.delete(key)
    return True


@pytest.fixture
def redis_url(redis_db: int) -> str:
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{redis_db}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'judgeserve.db'}"
        return
    yield from pg_schema_url()


def pg_schema_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards: test
    sessions running side by side on database `test` never see each other's tables."""
    import sqlalchemy as sa

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'judgeserve.db'}"


@pytest.fixture(scope="session", autouse=True)
def private_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every process of the session (and those it starts) keeps its local token here, never
    in the developer's own data directory; an SDK in the tests finds it here too."""
    path = tmp_path_factory.mktemp("data")
    old = os.environ.get("JUDGESERVE_DATA_DIR")
    os.environ["JUDGESERVE_DATA_DIR"] = str(path)
    get_settings.cache_clear()
    yield path
    if old is None:
        os.environ.pop("JUDGESERVE_DATA_DIR", None)
    else:
        os.environ["JUDGESERVE_DATA_DIR"] = old
    get_settings.cache_clear()


@pytest.fixture
def settings(redis_url: str, sqlite_url: str, tmp_path: Path) -> Iterator[Settings]:
    s = Settings(
        redis_url=redis_url,
        database_url=sqlite_url,
        stream_prefix=f"t{uuid.uuid4().hex[:8]}",
        spool_dir=tmp_path / "spool",
        index_dir=tmp_path / "indexes",
        data_dir=tmp_path / "data",
        claim_idle_ms=300,
        port=free_port(),
        # Tests that are not about access turn auth off, and answer TestClient's Host
        # ("testserver"); the access tests take `default_access`, as a user gets them.
        auth="off",
        allowed_hosts=["127.0.0.1", "localhost", "testserver"],
    )
    yield s
    r = redis.Redis.from_url(redis_url)
    for key in r.scan_iter(f"{s.stream_prefix}:*"):
        r.delete(key)
    r.close()


@pytest.fixture
def default_access(settings: Settings) -> Settings:
    """``settings`` with auth and the Host allow-list at their defaults: auth on, loopback
    names only (a TestClient must then say ``base_url="http://127.0.0.1"``)."""
    s = settings.model_copy(
        update={"auth": Settings.model_fields["auth"].default, "allowed_hosts": []}
    )
    assert s.auth == "on" and s.allowed_hosts == []
    return s


class LiveServer:
    """A real uvicorn server in a thread: the SDK talks to it over a socket."""

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self.url = f"http://127.0.0.1:{settings.port}"
        self._store = store
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> LiveServer:
        config = uvicorn.Config(
            create_app(self.settings, store=self._store),
            host="127.0.0.1",
            port=self.settings.port,
            log_level="warning",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline, "API did not start"
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)


@pytest.fixture
def live_api(settings: Settings) -> Iterator[LiveServer]:
    server = LiveServer(settings).start()
    yield server
    server.stop()


@pytest.fixture
def make_worker(settings: Settings) -> Iterator[Callable[..., Worker]]:
    """Factory of in-process workers; every one made is closed after the test."""
    made: list[Worker] = []

    def factory(**kwargs: object) -> Worker:
        w = Worker(kwargs.pop("settings", settings), **kwargs)  # type: ignore[arg-type]
        made.append(w)
        return w

    yield factory
    for w in made:
        w.stop()
        w.close()


@pytest.fixture
def running() -> Iterator[Callable[..., threading.Thread]]:
    """Run a worker's own loop in a thread; stopped and joined afterwards."""
    started: list[tuple[Worker, threading.Thread]] = []

    def start(worker: Worker, **kwargs: Any) -> threading.Thread:
        t = threading.Thread(target=worker.run, kwargs=kwargs, daemon=True)
        t.start()
        started.append((worker, t))
        return t

    yield start
    for w, t in started:
        w.stop()
        t.join(timeout=15)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    s = Store(database_url)
    yield s
    s.close()


@pytest.fixture
def worker_thread(make_worker: Callable[..., Worker]) -> Iterator[Worker]:
    w = make_worker()
    t = threading.Thread(target=w.run, daemon=True)
    t.start()
    yield w
    w.stop()
    t.join(timeout=10)


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(every)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "judgeserve.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
