"""The delivery agent in-process: deliver, backoff, torn lines, adoption, legacy journals, main.

The product runs the agent as its own process (tests/test_journal.py does too); here its
pieces are called directly so each rule is checked on its own. The API is a small local
HTTP server (only the HTTP edge matters to the agent) that answers a scripted status per
request and records what it was sent.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from judgeserve.client import agent as agent_module
from judgeserve.client.agent import Agent, _upgrade_legacy, adopt
from judgeserve.client.journal import (
    Files,
    create_locked,
    read_errors,
    read_position,
    record_error,
    remove,
    segments,
    write_position,
)


class FakeAPI:
    """Answers each request with the next scripted status (202 once the script is out)."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str], Any]] = []
        self.requests: list[tuple[str, str | None, dict[str, Any]]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                api.requests.append((self.path, self.headers.get("Authorization"), body))
                status, headers, detail = api.script.pop(0) if api.script else (202, {}, None)
                payload = json.dumps({"detail": detail}).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def ids(self) -> list[str]:
        return [s["id"] for _, _, body in self.requests for s in body.get("samples", [])]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api() -> Iterator[FakeAPI]:
    server = FakeAPI()
    yield server
    server.close()


class Timed(Agent):
    """An agent that notes how long it was asked to sleep (and really sleeps)."""

    def __init__(self, http: httpx.Client, max_backoff: float) -> None:
        super().__init__(http, max_backoff)
        self.sleeps: list[float] = []

    def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        super()._sleep(seconds)


def make_agent(api: FakeAPI, max_backoff: float = 0.5) -> Timed:
    return Timed(httpx.Client(base_url=api.url, timeout=5), max_backoff)


def line(tag: str, n: int = 2, run: str = "r") -> bytes:
    samples = [{"id": f"{tag}-{i}", "prompt": "q", "completion": f"answer {i}"} for i in range(n)]
    return orjson.dumps({"path": f"/v1/runs/{run}/samples", "body": {"step": 1, "samples": samples}}) + b"\n"


def ids(*tags: str, n: int = 2) -> list[str]:
    return [f"{t}-{i}" for t in tags for i in range(n)]


def journal(directory: Path, name: str, *segs: bytes) -> Files:
    """A journal as a dead client left it: an unlocked lock file and its segments."""
    directory.mkdir(parents=True, exist_ok=True)
    files = Files(directory, name)
    files.lock.touch()
    for n, content in enumerate(segs):
        files.segment(n).write_bytes(content)
    return files


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    # Whole messages, not a substring of the log: the agent's log is what its user reads.
    return [r.getMessage() for r in caplog.records]


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# --- Agent.deliver ----------------------------------------------------------------------

def test_deliver_sends_each_line_once_and_records_the_position(api: FakeAPI, tmp_path: Path) -> None:
    a, b, c = line("a"), line("b"), line("c", run="other")
    files = journal(tmp_path, "j", a + b + c)
    assert make_agent(api).deliver(files, follow=lambda: False) is True
    assert api.ids() == ids("a", "b", "c")
    assert [p for p, _, _ in api.requests] == ["/v1/runs/r/samples", "/v1/runs/other/samples"]
    assert read_position(files) == (0, len(a + b + c))
    assert files.segment(0).exists()  # the last segment stays: its writer may append
    # Delivering again from the recorded position sends nothing twice.
    assert make_agent(api).deliver(files, follow=lambda: False) is True
    assert api.ids() == ids("a", "b", "c")


def test_deliver_resumes_from_the_recorded_position(api: FakeAPI, tmp_path: Path) -> None:
    a, b = line("a"), line("b")
    files = journal(tmp_path, "j", a + b)
    write_position(files, (0, len(a)))
    assert make_agent(api).deliver(files, follow=lambda: False)
    assert api.ids() == ids("b")


def test_deliver_moves_through_segments_and_deletes_delivered_ones(api: FakeAPI, tmp_path: Path) -> None:
    s0, s1, s2 = line("a") + line("b"), line("c"), line("d")
    files = journal(tmp_path, "j", s0, s1, s2)
    assert make_agent(api).deliver(files, follow=lambda: False)
    assert api.ids() == ids("a", "b", "c", "d")
    assert segments(files) == [2]
    assert read_position(files) == (2, len(s2))
    assert read_errors(files) == []


def test_a_recorded_segment_already_gone_starts_the_next_at_its_start(api: FakeAPI, tmp_path: Path) -> None:
    """The agent died after deleting a delivered segment but before recording the next."""
    files = journal(tmp_path, "j", b"", line("a") + line("b"))
    files.segment(0).unlink()
    write_position(files, (0, 17))
    assert make_agent(api).deliver(files, follow=lambda: False)
    assert api.ids() == ids("a", "b")
    assert read_position(files) == (1, len(line("a") + line("b")))
    assert read_errors(files) == []


def test_position_between_segments(api: FakeAPI, tmp_path: Path) -> None:
    s0 = line("a")
    files = journal(tmp_path, "j", s0, b"")
    assert make_agent(api).deliver(files, follow=lambda: False)
    assert read_position(files) == (1, 0)
    assert segments(files) == [1]


def test_api_down_leaves_the_journal_whole_when_impatient(api: FakeAPI, tmp_path: Path) -> None:
    files = journal(tmp_path, "j", line("a") + line("b"))
    api.script = [(503, {}, "down")]
    agent = make_agent(api)
    assert agent.deliver(files, follow=lambda: False, patient=False) is False
    assert read_position(files) == (0, 0)
    assert files.segment(0).read_bytes() == line("a") + line("b")
    assert agent.sleeps == []  # gave up at once rather than waiting


def test_backoff_doubles_to_its_cap_and_resets_after_a_success(api: FakeAPI, tmp_path: Path) -> None:
    a, b = line("a"), line("b")
    files = journal(tmp_path, "j", a)
    api.script = [(503, {}, "x")] * 3 + [(202, {}, None), (503, {}, "x")]

    def follow() -> bool:  # the trainer writes b once a is delivered, then closes
        if read_position(files) == (0, len(a)) and files.segment(0).stat().st_size == len(a):
            with open(files.segment(0), "ab") as fh:
                fh.write(b)
        return read_position(files) != (0, len(a + b))

    agent = make_agent(api, max_backoff=0.5)
    assert agent.deliver(files, follow=follow)
    assert agent.sleeps == [0.2, 0.4, 0.5, 0.02, 0.2]
    assert api.ids() == ids("a") * 4 + ids("b") * 2
    assert read_position(files) == (0, len(a + b))


def test_retry_after_is_honoured(api: FakeAPI, tmp_path: Path) -> None:
    files = journal(tmp_path, "j", line("a"))
    api.script = [(429, {"Retry-After": "0"}, "slow down"), (503, {}, "x")]
    agent = make_agent(api, max_backoff=0.3)
    assert agent.deliver(files, follow=lambda: False)
    assert agent.sleeps == [0.0, 0.3]  # the server's word first; then the backoff (capped)
    assert api.ids() == ids("a") * 3


def test_retry_calls_follow_so_an_orphan_can_give_up(api: FakeAPI, tmp_path: Path) -> None:
    files = journal(tmp_path, "j", line("a"))
    api.script = [(503, {}, "x")] * 3
    calls: list[int] = []

    def follow() -> bool:
        calls.append(1)
        return False

    assert make_agent(api, max_backoff=0.05).deliver(files, follow=follow)
    assert len(calls) >= 3


def test_idle_polling_backs_off_to_its_cap(api: FakeAPI, tmp_path: Path) -> None:
    files = journal(tmp_path, "j", line("a"))
    answers = iter([True] * 6 + [False])
    agent = make_agent(api)
    assert agent.deliver(files, follow=lambda: next(answers))
    assert agent.sleeps == [0.02, 0.04, 0.08, 0.16, 0.25, 0.25]
    assert api.ids() == ids("a")


def test_tailing_picks_up_new_lines_and_resets_the_idle_wait(api: FakeAPI, tmp_path: Path) -> None:
    files = journal(tmp_path, "j", line("a"))
    calls: list[int] = []

    def follow() -> bool:
        calls.append(1)
        if len(calls) == 3:
            with open(files.segment(0), "ab") as fh:
                fh.write(line("b"))
        return len(calls) < 5

    agent = make_agent(api)
    assert agent.deliver(files, follow=follow)
    assert api.ids() == ids("a", "b")
    assert agent.sleeps == [0.02, 0.04, 0.08, 0.02]  # the wait starts over after new lines


def test_waits_for_the_writer_to_make_the_first_segment(api: FakeAPI, tmp_path: Path) -> None:
    files = journal(tmp_path, "j")
    calls: list[int] = []

    def follow() -> bool:
        calls.append(1)
        if len(calls) == 2:
            files.segment(0).write_bytes(line("a"))
        return len(calls) < 3

    agent = make_agent(api)
    assert agent.deliver(files, follow=follow)
    assert api.ids() == ids("a")
    assert agent.sleeps[:2] == [0.02, 0.02]


def test_bad_lines_are_reported_and_skipped(
    api: FakeAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = journal(tmp_path, "corrupt", line("a") + b"{not json\n" + b'{"path": 1}\n' + line("b"))
    with caplog.at_level(logging.ERROR, logger="judgeserve.agent"):
        assert make_agent(api).deliver(files, follow=lambda: False)
    assert api.ids() == ids("a", "b")
    errors = read_errors(files)
    assert [e["status"] for e in errors] == [None, None]
    assert "not JSON" in errors[0]["detail"] and "10 bytes skipped" in errors[0]["detail"]
    assert errors[1]["detail"] == "journal line is not a request; 12 bytes skipped"
    assert any(m.startswith("corrupt, segment 0: journal line is not JSON (") for m in messages(caplog))


def test_refused_samples_are_recorded_in_the_journals_errors(api: FakeAPI, tmp_path: Path) -> None:
    files = journal(tmp_path, "j", line("a") + line("b", run="gone"))
    api.script = [(202, {}, None), (404, {}, "run not found")]
    assert make_agent(api).deliver(files, follow=lambda: False)
    assert read_errors(files) == [
        {"status": 404, "detail": "run not found", "path": "/v1/runs/gone/samples", "samples": ids("b")}
    ]
    assert read_position(files) == (0, len(line("a") + line("b", run="gone")))


def test_torn_last_line_is_reported_once_the_rest_is_delivered(
    api: FakeAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    a = line("a")
    files = journal(tmp_path, "torn", a + line("b")[:40])
    with caplog.at_level(logging.ERROR, logger="judgeserve.agent"):
        assert make_agent(api).deliver(files, follow=lambda: False)
    assert messages(caplog) == [f"torn: {read_errors(files)[0]['detail']}"]
    assert api.ids() == ids("a")
    assert read_position(files) == (0, len(a))
    assert read_errors(files) == [{
        "status": None, "path": None, "samples": [],
        "detail": "journal segment 0 ends in a torn line of 40 bytes (its writer died while writing it); "
                  "that request was lost before it was recorded",
    }]


def test_torn_line_in_a_finished_segment_is_reported_and_passed(api: FakeAPI, tmp_path: Path) -> None:
    files = journal(tmp_path, "torn", line("a") + line("b")[:25], line("c"))
    assert make_agent(api).deliver(files, follow=lambda: False)
    assert api.ids() == ids("a", "c")
    assert [e["detail"][:55] for e in read_errors(files)] == ["journal segment 0 ends in a torn line of 25 bytes (its "]
    assert segments(files) == [1]


def test_a_line_being_written_is_not_read_while_following(api: FakeAPI, tmp_path: Path) -> None:
    b = line("b")
    files = journal(tmp_path, "j", line("a") + b[:20])
    calls: list[int] = []

    def follow() -> bool:
        calls.append(1)
        if len(calls) == 2:
            with open(files.segment(0), "ab") as fh:
                fh.write(b[20:])
        return len(calls) < 3

    assert make_agent(api).deliver(files, follow=follow)
    assert api.ids() == ids("a", "b")
    assert read_errors(files) == []


# --- Agent._sleep -----------------------------------------------------------------------

def test_sleep_waits_its_time_and_a_wake_up_ends_it(api: FakeAPI) -> None:
    agent = Agent(httpx.Client(base_url=api.url), 1.0)
    t = time.monotonic()
    agent._sleep(0.15)
    assert 0.14 <= time.monotonic() - t < 1.0
    t = time.monotonic()
    agent._sleep(-5)  # a negative wait is no wait
    assert time.monotonic() - t < 0.1
    os.write(agent.wake_fd, b"\0" * 3)
    t = time.monotonic()
    agent._sleep(10)
    assert time.monotonic() - t < 1.0
    # The wake-ups were drained: the next sleep waits again.
    t = time.monotonic()
    agent._sleep(0.15)
    assert time.monotonic() - t >= 0.14


# --- adopt ------------------------------------------------------------------------------

def test_adopt_delivers_dead_journals_and_removes_them(
    api: FakeAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    own = journal(tmp_path, "own", line("own"))
    dead = journal(tmp_path, "dead", line("d0"), line("d1"))
    record_error(dead, {"status": 404, "detail": "earlier", "path": "/p", "samples": []})
    with caplog.at_level(logging.INFO, logger="judgeserve.agent"):
        adopt(make_agent(api), own)
    assert api.ids() == ids("d0", "d1")  # its own journal is not the adopter's to send here
    assert "adopting dead" in messages(caplog)
    assert names(tmp_path) == ["dead.errors.done", "own.000000.jsonl", "own.lock"]


def test_adopt_never_touches_a_live_journal(api: FakeAPI, tmp_path: Path) -> None:
    own = journal(tmp_path, "own")
    live = journal(tmp_path, "live", line("l"))
    live.lock.unlink()
    fd = create_locked(live.lock)  # held as a live client holds it
    try:
        dead = journal(tmp_path, "zdead", line("z"))
        adopt(make_agent(api), own)
        assert api.ids() == ids("z")
        assert live.segment(0).read_bytes() == line("l") and live.lock.exists()
        assert not dead.lock.exists()
    finally:
        os.close(fd)


def test_adopt_keeps_an_undelivered_journal_for_the_next_client(
    api: FakeAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    own = journal(tmp_path, "own")
    dead = journal(tmp_path, "dead", line("a") + line("b"))
    api.script = [(503, {}, "down")]
    with caplog.at_level(logging.WARNING, logger="judgeserve.agent"):
        adopt(make_agent(api), own)
    assert dead.segment(0).read_bytes() == line("a") + line("b")
    assert dead.lock.exists() and read_position(dead) == (0, 0)
    assert "the API is unavailable; dead stays for the next client" in messages(caplog)
    # Its lock was let go: the next client can adopt it.
    adopt(make_agent(api), own)
    assert api.ids() == ids("a", "b") * 2 and not dead.lock.exists()


def test_adopt_goes_on_past_vanished_and_unreadable_journals(
    api: FakeAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    own = journal(tmp_path, "own")
    (tmp_path / "a.lock").symlink_to(tmp_path / "nowhere")  # removed between listing and opening
    broken = journal(tmp_path, "b")
    broken.segment(0).mkdir()  # cannot be read as a journal
    journal(tmp_path, "c", line("c"))
    with caplog.at_level(logging.ERROR, logger="judgeserve.agent"):
        adopt(make_agent(api), own)
    assert api.ids() == ids("c")
    assert "could not adopt b; it stays for the next client" in messages(caplog)
    assert broken.lock.exists() and broken.segment(0).is_dir()


def test_adopt_skips_a_lock_replaced_while_it_waited(
    api: FakeAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = journal(tmp_path, "own")
    dead = journal(tmp_path, "dead", line("d"))
    real_flock = fcntl.flock

    later = journal(tmp_path, "later", line("l"))
    calls: list[int] = []

    def replaced_meanwhile(fd: int, op: int) -> None:
        real_flock(fd, op)
        calls.append(1)
        if len(calls) == 1:
            # Its owner delivered and removed it, and a new client made one of the same name.
            dead.lock.unlink()
            dead.lock.touch()

    monkeypatch.setattr(fcntl, "flock", replaced_meanwhile)
    adopt(make_agent(api), own)
    monkeypatch.undo()
    assert api.ids() == ids("l") and dead.segment(0).exists()  # the next journal still adopted
    assert not later.lock.exists()


# --- _upgrade_legacy ---------------------------------------------------------------------

def test_legacy_journals_get_segments_without_loss(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    content = line("a") + line("b")
    (tmp_path / "old.jsonl").write_bytes(content)
    (tmp_path / "old.offset").write_text(f"{len(line('a'))}\n")
    (tmp_path / "nooffset.jsonl").write_bytes(content)
    (tmp_path / "junk.jsonl").write_bytes(content)
    (tmp_path / "junk.offset").write_text("garbage")
    (tmp_path / "cur.000000.jsonl").write_bytes(content)  # today's layout: left alone
    with caplog.at_level(logging.INFO, logger="judgeserve.agent"):
        _upgrade_legacy(tmp_path)
    for name, position in (("old", (0, len(line("a")))), ("nooffset", (0, 0)), ("junk", (0, 0))):
        files = Files(tmp_path, name)
        assert files.segment(0).read_bytes() == content
        assert read_position(files) == position
        assert not (tmp_path / f"{name}.jsonl").exists()
        # Its lock exists, unlocked: an adopter can take it.
        fd = os.open(files.lock, os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(fd)
    assert (tmp_path / "cur.000000.jsonl").read_bytes() == content
    assert not (tmp_path / "cur.lock").exists() and not (tmp_path / "cur.000000.000000.jsonl").exists()
    assert "journal old moved to segments, to be adopted" in messages(caplog)


def test_legacy_journal_of_a_live_old_agent_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "0.jsonl").symlink_to(tmp_path / "nowhere")  # removed between listing and opening
    (tmp_path / "a.jsonl").write_bytes(line("a"))
    (tmp_path / "b.jsonl").write_bytes(line("b"))
    fd = os.open(tmp_path / "a.jsonl", os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # its old agent holds it
    try:
        _upgrade_legacy(tmp_path)
    finally:
        os.close(fd)
    assert names(tmp_path) == ["0.jsonl", "a.jsonl", "b.000000.jsonl", "b.lock", "b.offset"]


def test_legacy_journal_that_cannot_be_taken_over_stays(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "a.jsonl").write_bytes(line("a"))
    (tmp_path / "a.lock.new").touch()  # another process is making its lock
    (tmp_path / "b.jsonl").write_bytes(line("b"))
    with caplog.at_level(logging.ERROR, logger="judgeserve.agent"):
        _upgrade_legacy(tmp_path)
    assert (tmp_path / "a.jsonl").read_bytes() == line("a")
    assert Files(tmp_path, "b").segment(0).read_bytes() == line("b")
    assert any(m.startswith(f"could not take over the old journal {tmp_path / 'a.jsonl'}: [Errno 17] File exists")
               for m in messages(caplog))


def test_adopt_delivers_a_legacy_journal(api: FakeAPI, tmp_path: Path) -> None:
    own = journal(tmp_path, "own")
    (tmp_path / "old.jsonl").write_bytes(line("sent") + line("unsent"))
    (tmp_path / "old.offset").write_text(str(len(line("sent"))))
    adopt(make_agent(api), own)
    assert api.ids() == ids("unsent")
    assert names(tmp_path) == ["own.lock"]


# --- journal.remove / record_error ------------------------------------------------------

def test_remove_deletes_one_journal_and_keeps_its_errors(tmp_path: Path) -> None:
    files = journal(tmp_path, "j", line("a"), line("b"), line("c"))
    other = journal(tmp_path, "j2", line("x"))
    write_position(files, (2, 5))
    record_error(files, {"status": 400, "detail": "first", "path": "/p", "samples": ["1"]})
    record_error(files, {"status": None, "detail": "second", "path": None, "samples": []})
    remove(files)
    assert names(tmp_path) == ["j.errors.done", "j2.000000.jsonl", "j2.lock"]
    assert [e["detail"] for e in read_errors(files)] == ["first", "second"]
    assert other.segment(0).read_bytes() == line("x")
    remove(other)  # no errors file: nothing to keep
    assert names(tmp_path) == ["j.errors.done"]


# --- main -------------------------------------------------------------------------------

@pytest.fixture
def agent_process_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """main() sets signal handlers and the wake-up fd for the process: put them back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM)}
    old_wakeup = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(old_wakeup)

    def exit_(code: int) -> None:  # the agent's process exit, as the test sees it
        raise SystemExit(code)

    monkeypatch.setattr(os, "_exit", exit_)
    yield
    signal.set_wakeup_fd(old_wakeup)
    for s, handler in saved.items():
        signal.signal(s, handler)


def run_main(monkeypatch: pytest.MonkeyPatch, files: Files, lock_fd: int, url: str, parent: int,
             *extra: str) -> None:
    argv = ["agent", "--dir", str(files.directory), "--id", files.name, "--lock-fd", str(lock_fd),
            "--url", url, "--parent", str(parent), "--timeout", "5", *extra]
    monkeypatch.setattr(sys, "argv", argv)
    agent_module.main()


def own_journal(directory: Path, *segs: bytes) -> tuple[Files, int]:
    files = Files(directory, "own")
    directory.mkdir(parents=True, exist_ok=True)
    fd = create_locked(files.lock)
    for n, content in enumerate(segs):
        files.segment(n).write_bytes(content)
    return files, fd


def closed(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return True
    os.close(fd)
    return False


@pytest.mark.usefixtures("agent_process_state")
def test_main_of_an_orphan_adopts_drains_and_cleans_up(
    api: FakeAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUDGESERVE_AGENT_TOKEN", "tok-123")
    journal(tmp_path, "dead", line("d"))
    files, fd = own_journal(tmp_path, line("a"), line("b"))
    run_main(monkeypatch, files, fd, api.url, os.getppid() + 100_000,
             "--max-backoff", "0.2", "--orphan-grace", "30")
    assert api.ids() == ids("d", "a", "b")
    assert {auth for _, auth, _ in api.requests} == {"Bearer tok-123"}
    assert names(tmp_path) == []
    assert closed(fd)
    # A late flush() or close() signal no longer ends the process.
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_IGN
    assert signal.getsignal(signal.SIGUSR2) == signal.SIG_IGN


@pytest.mark.usefixtures("agent_process_state")
def test_main_without_a_token_sends_no_authorization(
    api: FakeAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JUDGESERVE_AGENT_TOKEN", raising=False)
    files, fd = own_journal(tmp_path, line("a"))
    run_main(monkeypatch, files, fd, api.url, os.getppid() + 100_000)
    assert api.requests[0][1] is None and api.ids() == ids("a")


@pytest.mark.usefixtures("agent_process_state")
def test_main_tails_until_close_is_signalled(
    api: FakeAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files, fd = own_journal(tmp_path, line("a"))

    def trainer() -> None:
        time.sleep(0.3)
        with open(files.segment(0), "ab") as fh:
            fh.write(line("b"))
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGUSR1)  # flush(): nothing changes but a wake-up
        time.sleep(0.1)
        with open(files.segment(0), "ab") as fh:
            fh.write(line("c"))
        os.kill(os.getpid(), signal.SIGUSR2)  # close(): drain, then go

    t = threading.Thread(target=trainer)
    t.start()
    start = time.monotonic()
    run_main(monkeypatch, files, fd, api.url, os.getppid())
    t.join()
    assert api.ids() == ids("a", "b", "c")
    assert time.monotonic() - start < 5
    assert names(tmp_path) == [] and closed(fd)


@pytest.mark.usefixtures("agent_process_state")
def test_orphan_gives_up_after_its_grace_and_keeps_the_journal(
    api: FakeAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    files, fd = own_journal(tmp_path, line("a"))
    api.script = [(503, {}, "down")] * 1000
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="judgeserve.agent"), pytest.raises(SystemExit) as exit_:
        run_main(monkeypatch, files, fd, api.url, os.getppid() + 100_000,
                 "--max-backoff", "0.05", "--orphan-grace", "0.5")
    assert exit_.value.code == 1
    assert 0.5 <= time.monotonic() - start < 5
    assert f"trainer {os.getppid() + 100_000} gone; delivering what it left" in messages(caplog)
    assert "giving up after 0s; own stays for the next client" in messages(caplog)
    assert files.segment(0).read_bytes() == line("a") and read_position(files) == (0, 0)
    os.close(fd)


def test_main_requires_its_arguments(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["agent", "--dir", "/tmp", "--id", "x", "--lock-fd", "nope",
                                      "--url", "http://h", "--parent", "1"])
    with pytest.raises(SystemExit) as exit_:
        agent_module.main()
    assert exit_.value.code == 2
    assert "--lock-fd: invalid int value: 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("missing", ["--dir", "--id", "--lock-fd", "--url", "--parent"])
def test_main_names_a_missing_argument(
    missing: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    given = {"--dir": str(tmp_path), "--id": "x", "--lock-fd": "5", "--url": "http://h", "--parent": "1"}
    del given[missing]
    monkeypatch.setattr(sys, "argv", ["agent", *(x for kv in given.items() for x in kv)])
    with pytest.raises(SystemExit) as exit_:
        agent_module.main()
    assert exit_.value.code == 2
    assert f"the following arguments are required: {missing}" in capsys.readouterr().err
