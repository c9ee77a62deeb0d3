"""The SDK's journal and agent: locks, adoption, torn lines, short writes, rotation, signals."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import signal
from pathlib import Path

import pytest

from judgeserve import ClientError, JudgeClient, read
from judgeserve.client import journal as journal_module
from judgeserve.client.journal import Files, Journal, network_filesystem, segments
from judgeserve.settings import Settings
from judgeserve.store import Store
from judgeserve.worker import Worker

from .conftest import LiveServer, wait_for


def samples(tag: str, n: int) -> list[dict]:
    return [{"id": f"{tag}-{i}", "prompt": "q", "completion": f"answer {i} of {tag}"} for i in range(n)]


def scored(settings: Settings, run: str) -> int:
    store = Store(settings.database_url)
    try:
        return read.count_scored(store, run)
    finally:
        store.close()


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*") if not p.name.endswith((".log", ".errors.done")))


def test_journal_is_locked_before_the_client_returns(settings: Settings) -> None:
    """Another agent of the run must never find a live journal unlocked, not even in the
    moment before the client's own agent has started."""
    client = JudgeClient("http://127.0.0.1:9", run="lock-run", spool_dir=settings.spool_dir)
    try:
        def locked(path: Path) -> bool:
            with open(path, "rb") as fh:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return True
                return False

        journal_files = [p for p in (settings.spool_dir / "lock-run").iterdir() if p.suffix in (".lock", ".jsonl")]
        assert journal_files and any(locked(p) for p in journal_files)
    finally:
        client.close(timeout=0.1)


def test_two_clients_of_one_run_lose_nothing(
    live_api: LiveServer, worker_thread: Worker, settings: Settings
) -> None:
    """One client per DDP rank: each agent adopts leftovers, never the other's live journal."""
    first = JudgeClient(live_api.url, run="ranks", spool_dir=settings.spool_dir)
    second = JudgeClient(live_api.url, run="ranks", spool_dir=settings.spool_dir)
    for k in range(20):
        first.submit(k, samples(f"a{k}", 3))
        second.submit(k, samples(f"b{k}", 3))
    first.close()
    second.close()
    wait_for(lambda: scored(settings, "ranks") == 120)
    assert leftovers(settings.spool_dir / "ranks") == []


def test_second_client_while_api_down_keeps_first_journal(
    settings: Settings, worker_thread: Worker
) -> None:
    """A client that adopts a journal while the API is down must leave it whole."""
    url = f"http://127.0.0.1:{settings.port}"  # nothing listens there yet
    run_dir = settings.spool_dir / "down-run"
    first = JudgeClient(url, run="down-run", spool_dir=settings.spool_dir, max_backoff_s=0.2)
    first.submit(1, samples("first", 7))
    first.close(timeout=0.5)
    kept = {p.name: p.read_bytes() for p in run_dir.glob("*.jsonl")}
    assert kept
    second = JudgeClient(url, run="down-run", spool_dir=settings.spool_dir, max_backoff_s=0.2)
    second.submit(2, samples("second", 3))
    # The second agent tried the first journal and gave up on it for now.
    wait_for(lambda: "stays for the next client" in second.journal.files.log.read_text(), timeout=20)
    second.close(timeout=0.5)
    for name, content in kept.items():
        assert (run_dir / name).read_bytes() == content
    server = LiveServer(settings).start()
    try:
        with JudgeClient(url, run="down-run", spool_dir=settings.spool_dir) as third:
            assert third.flush(timeout=20)
        wait_for(lambda: scored(settings, "down-run") == 10)
        wait_for(lambda: leftovers(run_dir) == [], timeout=10)
    finally:
        server.stop()


def test_many_signals_never_hang_the_agent(live_api: LiveServer, settings: Settings) -> None:
    """flush() and close() signal the agent; a signal arriving while the handler of the
    previous one runs must not deadlock it (it did: Event.set inside Event.set)."""
    client = JudgeClient(live_api.url, run="sig-run", spool_dir=settings.spool_dir)
    client.submit(1, samples("s", 2))
    assert client.flush(timeout=10)
    for _ in range(3):
        for _ in range(300):
            os.kill(client._agent.pid, signal.SIGUSR1)
        os.kill(client._agent.pid, signal.SIGUSR2)
        if client._agent.poll() is not None:
            break
    assert client._agent.wait(timeout=5) == 0
    client.close()
    assert leftovers(settings.spool_dir / "sig-run") == []


def test_short_writes_are_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write
    monkeypatch.setattr(journal_module.os, "write", lambda fd, data: real_write(fd, bytes(data)[:7]))
    j = Journal(tmp_path, "short")
    for i in range(3):
        j.append({"path": "/p", "body": {"i": i, "text": "é" * 50}})
    lines = j.files.segment(0).read_bytes().splitlines()
    assert [len(ln) for ln in lines] == [len(lines[0])] * 3 and lines[2].endswith(b"}}")
    j.close()


def test_failed_write_leaves_no_torn_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    j = Journal(tmp_path, "full")
    j.append({"path": "/p", "body": {"i": 0}})
    before = j.files.segment(0).read_bytes()
    real_write = os.write
    calls = {"n": 0}

    def disk_full(fd: int, data: bytes) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, bytes(data)[:5])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(journal_module.os, "write", disk_full)
    with pytest.raises(ClientError, match="No space left"):
        j.append({"path": "/p", "body": {"i": 1}})
    assert j.files.segment(0).read_bytes() == before
    monkeypatch.setattr(journal_module.os, "write", real_write)
    assert j.append({"path": "/p", "body": {"i": 2}}) == (0, j.files.segment(0).stat().st_size)
    assert len(j.files.segment(0).read_bytes().splitlines()) == 2
    j.close()


def _leftover(run_dir: Path, name: str, content: bytes) -> Files:
    """A journal whose client and agent are gone, as they left it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    files = Files(run_dir, name)
    files.lock.touch()
    files.segment(0).write_bytes(content)
    return files


def test_torn_and_corrupt_lines_are_reported_never_fatal(
    live_api: LiveServer, worker_thread: Worker, settings: Settings
) -> None:
    import orjson

    def line(tag: str) -> bytes:
        body = {"step": 1, "samples": samples(tag, 2)}
        return orjson.dumps({"path": "/v1/runs/torn-run/samples", "body": body}) + b"\n"

    run_dir = settings.spool_dir / "torn-run"
    # A writer died mid-line, and a later one appended after the torn part.
    corrupt = _leftover(run_dir, "corrupt", line("c0") + line("c1")[:30] + line("c2"))
    torn = _leftover(run_dir, "torn", line("t0") + line("t1")[:40])
    with JudgeClient(live_api.url, run="torn-run", spool_dir=settings.spool_dir) as client:
        client.submit(2, samples("own", 3))
        assert client.flush(timeout=20)  # the agent survived both journals
    wait_for(lambda: scored(settings, "torn-run") == 2 + 2 + 3)
    assert leftovers(run_dir) == []
    corrupt_errors = corrupt.errors.with_suffix(".errors.done").read_text()
    assert "not JSON" in corrupt_errors
    torn_errors = torn.errors.with_suffix(".errors.done").read_text()
    assert "torn line of 40 bytes" in torn_errors


def test_journal_rotates_and_delivered_segments_go(
    live_api: LiveServer, worker_thread: Worker, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_module, "SEGMENT_BYTES", 600)
    client = JudgeClient(live_api.url, run="rot-run", spool_dir=settings.spool_dir)
    try:
        for k in range(12):
            client.submit(k, samples(f"r{k}", 4))  # ~400 bytes a line
        assert client.journal.position[0] >= 5
        assert client.flush(timeout=20)
        # Delivered segments are deleted once the writer has moved past them.
        wait_for(lambda: segments(client.journal.files) == [client.journal.segment], timeout=10)
    finally:
        client.close()
    wait_for(lambda: scored(settings, "rot-run") == 48)
    assert leftovers(settings.spool_dir / "rot-run") == []


def test_network_filesystem_is_detected(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "/dev/sda1 / ext4 rw 0 0\n"
        "server:/export /mnt/shared nfs4 rw,relatime 0 0\n"
        "/dev/sdb1 /mnt/shared/local ext4 rw 0 0\n"
        "//nas/home /home/me/nas cifs rw 0 0\n"
    )
    assert network_filesystem(Path("/mnt/shared/spool"), mounts) == "nfs4"
    assert network_filesystem(Path("/mnt/shared"), mounts) == "nfs4"
    assert network_filesystem(Path("/mnt/shared/local/spool"), mounts) is None
    assert network_filesystem(Path("/mnt/sharedx"), mounts) is None
    assert network_filesystem(Path("/home/me/nas/x"), mounts) == "cifs"
    assert network_filesystem(Path("/tmp"), tmp_path / "no-such-file") is None

    from judgeserve.client import sync

    monkeypatch.setattr(sync, "network_filesystem", lambda path: "nfs4")
    with caplog.at_level(logging.WARNING, logger="judgeserve.client.sync"):
        client = JudgeClient("http://127.0.0.1:9", run="nfs-run", spool_dir=settings.spool_dir)
        client.close(timeout=0.1)
    assert "network filesystem" in caplog.text and "nfs4" in caplog.text


def test_journal_of_an_older_sdk_is_adopted(
    live_api: LiveServer, worker_thread: Worker, settings: Settings
) -> None:
    """`<id>.jsonl` with a one-number offset, as SDKs before segments left them."""
    import orjson

    run_dir = settings.spool_dir / "old-run"
    run_dir.mkdir(parents=True)
    lines = [orjson.dumps({"path": "/v1/runs/old-run/samples", "body": {"step": 1, "samples": samples(t, 3)}}) + b"\n"
             for t in ("sent", "unsent")]
    (run_dir / "0123abcd.jsonl").write_bytes(b"".join(lines))
    (run_dir / "0123abcd.offset").write_text(str(len(lines[0])))  # the first line was delivered
    with JudgeClient(live_api.url, run="old-run", spool_dir=settings.spool_dir) as client:
        assert client.flush(timeout=20)
    wait_for(lambda: scored(settings, "old-run") == 3)
    store = Store(settings.database_url)
    assert {s["id"] for s in read.step_samples(store, "old-run", 1, limit=10)} == {f"unsent-{i}" for i in range(3)}
    store.close()
    assert leftovers(run_dir) == []


def test_last_line_before_rotation_is_not_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer appends its last line to a segment and opens the next one just after the
    agent found nothing new: the agent must read that line before moving on."""
    import httpx
    import orjson

    from judgeserve.client import agent as agent_module

    sent: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        sent.extend(s["id"] for s in orjson.loads(request.content)["samples"])
        return httpx.Response(202, json={})

    files = Files(tmp_path, "race")
    line = orjson.dumps({"path": "/v1/runs/r/samples", "body": {"step": 1, "samples": samples("last", 1)}}) + b"\n"
    files.segment(0).write_bytes(b"")
    real_segments = agent_module.segments

    calls = []

    def writer_moves_on(f: Files) -> list[int]:
        calls.append(1)
        if len(calls) == 2:  # the check that follows the agent's read which found nothing
            with open(files.segment(0), "ab") as fh:
                fh.write(line)
            files.segment(1).touch()
        return real_segments(f)

    monkeypatch.setattr(agent_module, "segments", writer_moves_on)
    agent = agent_module.Agent(httpx.Client(transport=httpx.MockTransport(api), base_url="http://api"), 1.0)
    assert agent.deliver(files, follow=lambda: False)
    assert sent == ["last-0"]
