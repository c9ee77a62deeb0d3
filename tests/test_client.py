"""The SDK: returns at once, spools while the API is down, replays, reports rejections."""

from __future__ import annotations

import threading

import orjson
import pytest

from judgeserve import APIError, AsyncJudgeClient, ClientError, JudgeClient, read
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


def test_bad_sample_raises_in_submit_and_nothing_is_queued(settings: Settings) -> None:
    client = JudgeClient("http://127.0.0.1:9", run="bad-run", spool_dir=settings.spool_dir)
    try:
        good = samples(1, 3)
        with pytest.raises(ClientError, match=r"sample 3 \(id 'big'\): completion: .*71680 bytes"):
            client.submit(1, [*good, {"id": "big", "prompt": "p", "completion": "x" * (70 * 1024)}])
        # Bytes, not characters: 30,000 three-byte characters are 90,000 bytes.
        with pytest.raises(ClientError, match=r"sample 0 .*completion.*90000 bytes"):
            client.submit(1, [{"completion": "\u20ac" * 30_000}])
        with pytest.raises(ClientError, match=r"sample 1 .*colour.*Extra inputs"):
            client.submit(1, [good[0], {"completion": "c", "colour": "red"}])
        with pytest.raises(ClientError, match="step"):
            client.submit(-1, good)
        with pytest.raises(ClientError, match="loss"):
            client.log_metrics(1, **{"loss" * 100: 1.0})
        assert client.journal.position == (0, 0)  # all-or-nothing: not one line written
        client.submit(1, good)
        assert client.journal.position[1] > 0
    finally:
        client.close(timeout=0.1)


def test_refused_samples_do_not_take_their_neighbours_down(
    live_api: LiveServer, worker_thread: Worker, settings: Settings
) -> None:
    """A 422 naming one sample (as for a journal an older SDK wrote) refuses that sample
    only; the others of the merged request are resent and scored."""
    with JudgeClient(live_api.url, run="rej-run", spool_dir=settings.spool_dir) as client:
        batch = samples(1, 5)
        batch[2] = {**batch[2], "completion": "x" * (70 * 1024)}
        client.journal.append({"path": "/v1/runs/rej-run/samples", "body": {"step": 1, "samples": batch}})
        client.submit(1, samples(2, 3))
        assert client.flush(timeout=10)
        errors = client.errors
        assert len(errors) == 1 and isinstance(errors[0], APIError)
        assert errors[0].status == 422 and errors[0].samples == ["1-2"]
        assert "completion" in str(errors[0].detail)
    store = Store(settings.database_url)
    wait_for(lambda: read.count_scored(store, "rej-run") == 7)
    store.close()


def test_request_over_the_body_cap_is_split(settings: Settings, worker_thread: Worker) -> None:
    small = settings.model_copy(update={"max_body_bytes": 20_000})
    server = LiveServer(small).start()
    try:
        with JudgeClient(server.url, run="split-run", spool_dir=settings.spool_dir) as client:
            client.submit(1, [{"id": f"s{i}", "completion": f"{i} " + "y" * 2000} for i in range(30)])
            client.submit(1, [{"id": "huge", "completion": "z" * 25_000}])  # valid, but over the cap
            assert client.flush(timeout=20)
            errors = client.errors
            assert [(e.status, e.samples) for e in errors] == [(413, ["huge"])]  # type: ignore[attr-defined]
        store = Store(settings.database_url)
        wait_for(lambda: read.count_scored(store, "split-run") == 30)
        store.close()
    finally:
        server.stop()


def test_requests_are_sized_in_bytes() -> None:
    from judgeserve.client.delivery import MAX_BYTES, plan

    # 600 samples of 60 KiB each in four-byte characters: 15,360 characters apiece.
    text = "\U0001F600" * (15 * 1024)
    body = {"step": 1, "samples": [{"id": str(i), "prompt": "", "completion": text} for i in range(600)]}
    requests = plan([(100, {"path": "/v1/runs/r/samples", "body": body})])
    sizes = [len(orjson.dumps(r["body"])) for r in requests]
    assert len(requests) > 4 and max(sizes) <= MAX_BYTES
    assert sum(len(r["body"]["samples"]) for r in requests) == 600


@pytest.mark.parametrize("run", ["../x", "a/b", "/abs/dir", "", ".hidden", "x" * 200, "ok\n"])
def test_run_name_is_a_name_not_a_path(settings: Settings, run: str) -> None:
    with pytest.raises(ClientError, match="invalid run name"):
        JudgeClient("http://127.0.0.1:9", run=run, spool_dir=settings.spool_dir / "inner")
    assert not settings.spool_dir.exists()  # nothing was made, inside or outside


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
