"""The SDK: returns at once, spools while the API is down, replays, reports rejections."""

from __future__ import annotations

import threading

import pytest

from judgeserve import AsyncJudgeClient, ClientError, JudgeClient, read
from judgeserve.settings import Settings
from judgeserve.store import Store
from judgeserve.worker import Worker

from .conftest import LiveServer, wait_for


def samples(step: int, n: int) -> list[dict]:
    return [{"id": f"{step}-{i}", "prompt": f"q{i}", "completion": f"answer {i} at {step}"} for i in range(n)]


def test_api_down_then_up_loses_nothing(settings: Settings, worker_thread: Worker) -> None:
    url = f"http://127.0.0.1:{settings.port}"  # nothing listens there yet
    client = JudgeClient(url, run="spool-run", spool_dir=settings.spool_dir, max_backoff_s=0.5)
    for step in range(5):
        client.submit(step, samples(step, 20))
    client.log_metrics(4, loss=0.1)
    assert client.flush(timeout=1.0) is False  # cannot deliver yet
    spooled = list((settings.spool_dir / "spool-run").glob("*.jsonl"))
    assert spooled and sum(len(p.read_text().splitlines()) for p in spooled) >= 1
    server = LiveServer(settings).start()
    try:
        assert client.flush(timeout=30) is True
        client.close()
        store = Store(settings.database_url)
        wait_for(lambda: read.count_scored(store, "spool-run") == 100)
        assert read.metric_series(store, "spool-run")["train.loss"][0]["mean"] == 0.1
        store.close()
        assert not list((settings.spool_dir / "spool-run").glob("*.jsonl"))
    finally:
        server.stop()


def test_spool_survives_the_client_and_is_adopted(settings: Settings, worker_thread: Worker) -> None:
    url = f"http://127.0.0.1:{settings.port}"
    first = JudgeClient(url, run="crash-run", spool_dir=settings.spool_dir)
    first.submit(1, samples(1, 7))
    first.close(timeout=0.5)  # gives up waiting; the batch stays on disk
    assert list((settings.spool_dir / "crash-run").glob("*.jsonl"))
    server = LiveServer(settings).start()
    try:
        with JudgeClient(url, run="crash-run", spool_dir=settings.spool_dir) as second:
            assert second.flush(timeout=30)
        store = Store(settings.database_url)
        wait_for(lambda: read.count_scored(store, "crash-run") == 7)
        store.close()
    finally:
        server.stop()


def test_rejected_batch_is_reported_not_retried(live_api: LiveServer, settings: Settings) -> None:
    with JudgeClient(live_api.url, run="rej-run", spool_dir=settings.spool_dir) as client:
        client.submit(1, [{"prompt": "p", "completion": "x" * (70 * 1024)}])
        assert client.flush(timeout=10)
        assert len(client.errors) == 1 and client.errors[0].status == 422
        assert "completion" in str(client.errors[0].detail)


def test_submit_validates_shape_and_closed_client(settings: Settings) -> None:
    client = JudgeClient("http://127.0.0.1:9", run="x", spool_dir=settings.spool_dir)
    with pytest.raises(ClientError, match="completion"):
        client.submit(1, [{"prompt": "no completion"}])
    client.close(timeout=0.1)
    with pytest.raises(ClientError, match="closed"):
        client.submit(1, samples(1, 1))


def test_submit_from_many_threads(live_api: LiveServer, worker_thread: Worker, settings: Settings) -> None:
    with JudgeClient(live_api.url, run="mt-run", spool_dir=settings.spool_dir) as client:
        threads = [threading.Thread(target=client.submit, args=(t, samples(t, 50))) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert client.flush(10)
    store = Store(settings.database_url)
    wait_for(lambda: read.count_scored(store, "mt-run") == 200)
    store.close()


async def _async_round_trip(url: str, settings: Settings) -> list:
    async with AsyncJudgeClient(url, run="async-run", spool_dir=settings.spool_dir) as client:
        await client.submit(3, samples(3, 4))
        assert await client.flush(10)
        return await client.alerts()


def test_async_client(live_api: LiveServer, worker_thread: Worker, settings: Settings) -> None:
    import asyncio

    assert asyncio.run(_async_round_trip(live_api.url, settings)) == []
    store = Store(settings.database_url)
    wait_for(lambda: read.count_scored(store, "async-run") == 4)
    store.close()


def test_trainer_killed_right_after_submit_loses_nothing(
    live_api: LiveServer, worker_thread: Worker, settings: Settings
) -> None:
    import subprocess
    import sys

    code = (
        "import os, signal\n"
        "from judgeserve import JudgeClient\n"
        f"c = JudgeClient({live_api.url!r}, run='killed-run', spool_dir={str(settings.spool_dir)!r})\n"
        "c.submit(1, [{'prompt': 'p', 'completion': f'c {i}'} for i in range(30)])\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], timeout=60)
    assert proc.returncode == -9
    store = Store(settings.database_url)
    wait_for(lambda: read.count_scored(store, "killed-run") == 30, timeout=30)
    store.close()
    # The orphaned agent finished the journal and cleaned up after itself.
    wait_for(lambda: not list((settings.spool_dir / "killed-run").glob("*.jsonl")), timeout=10)
