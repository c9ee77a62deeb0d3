"""The worker, batch by batch: what it stores, acknowledges, retries and dead-letters, and
what it says about the scorers that did not score, driven one batch at a time (no sleeping).

Real Redis, a real SQLite store; the scorers are small ones defined here, so each test
knows exactly which score each sample must end up with.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Connection

from judgeserve import read
from judgeserve.exceptions import StoreError, StoreUnavailable
from judgeserve.schema import Sample, Score
from judgeserve.scorers import Context, SampleScorer
from judgeserve.settings import Settings
from judgeserve.store import Store, scorer_status
from judgeserve.telemetry import read_shared
from judgeserve.worker import DISABLED, Backoff, Worker, _why


def payload(i: int, run: str = "b-run", step: int = 1, text: str = "a b c", **extra: Any) -> dict[str, Any]:
    return {"run": run, "step": step, "id": f"s{i}", "prompt": "p", "completion": text, **extra}


class Words(SampleScorer):
    """Two scores per sample (one family); remembers every context it was given."""

    name = "words"

    def __init__(self) -> None:
        self.seen: list[tuple[str, Context]] = []

    def score_in_context(self, samples: Sequence[Sample], contexts: Sequence[Context]) -> list[list[Score]]:
        self.seen += [(s.id, c) for s, c in zip(samples, contexts, strict=True)]
        return self.score(samples)

    def score(self, samples: Sequence[Sample]) -> list[list[Score]]:
        return [[Score(scorer="words.count", value=float(len(s.completion.split()))),
                 Score(scorer="words.chars", value=float(len(s.completion)))] for s in samples]


class Picky(SampleScorer):
    """Skips empty completions, cannot even look at BOOM, fails on BAD (in a batch too)."""

    name = "picky"

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def skip_reason(self, sample: Sample, context: Context) -> str | None:
        if "BOOM" in sample.completion:
            raise KeyError("boom")
        return "empty completion" if not sample.completion.strip() else None

    def score(self, samples: Sequence[Sample]) -> list[list[Score]]:
        self.calls.append([s.id for s in samples])
        for s in samples:
            if "BAD" in s.completion:
                raise ValueError(f"cannot score {s.id}\nsecond line")
        return [[Score(scorer="picky.ok", value=True)] for _ in samples]


class BatchShy(SampleScorer):
    """Fails on any batch of more than one sample, scores each alone: nothing is lost."""

    name = "shy"

    def score(self, samples: Sequence[Sample]) -> list[list[Score]]:
        if len(samples) > 1:
            raise RuntimeError("batch too large")
        return [[Score(scorer="shy.ok", value=1.0)] for _ in samples]


def scored(store: Store, run: str = "b-run", step: int = 1) -> dict[str, set[str]]:
    return {r["id"]: {sc["scorer"] for sc in r["scores"]}
            for r in read.step_samples(store, run, step, limit=1000)}


def status_rows(store: Store, run: str = "b-run") -> list[tuple[int, str, str, str, int]]:
    with store.begin() as conn:
        rows = conn.execute(select(scorer_status).where(scorer_status.c.run == run)).mappings()
        return sorted((r["step"], r["scorer"], r["kind"], r["reason"], r["n"]) for r in rows)


def batch(worker: Worker, *items: dict[str, Any]) -> Any:
    worker.queue.add(list(items))
    return worker.process(worker.queue.read(100, block_ms=50))


# -- pure parts --------------------------------------------------------------------------------


def test_backoff_doubles_up_to_its_cap_and_starts_again_after_reset() -> None:
    b = Backoff()
    assert [b.next() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    b.reset()
    assert b.next() == 0.5
    small = Backoff(first=1.0, most=3.0)
    assert [small.next() for _ in range(4)] == [1.0, 2.0, 3.0, 3.0]


def test_why_quotes_the_database_message_a_store_error_wraps() -> None:
    def wrapped(text: str, cause: Exception) -> StoreError:
        try:
            raise StoreError(text) from cause
        except StoreError as e:
            return e

    assert _why(wrapped("refused", ValueError("value too long"))) == \
        "StoreError: refused (ValueError: value too long)"
    # Already quoted: not twice.
    assert _why(wrapped("refused: value too long", ValueError("value too long"))) == \
        "StoreError: refused: value too long"
    assert _why(KeyError("k")) == "KeyError: 'k'"
    assert _why(RuntimeError("x" * 3000)) == ("RuntimeError: " + "x" * 3000)[:2000]


# -- one batch -----------------------------------------------------------------------------


def test_a_batch_is_stored_acknowledged_and_counted(settings: Settings, make_worker: Callable[..., Worker]) -> None:
    words = Words()
    worker = make_worker(scorers=[words, BatchShy()], hooks=())
    result = batch(
        worker,
        payload(0, rubrics=["helpful"], expected=2), payload(1, expected=1), payload(2, step=3),
        payload(3, run="b2", expected=True), payload(4, run="b2", step=2, expected=0),
        payload(5, run="b2", step=3, expected="4"), payload(6, run="b2", step=4, expected=-2),
        payload(7, run="b4", expected=1),
        {"run": "b-run", "step": -1, "id": "bad", "prompt": "", "completion": "x"},
    )
    assert (result.stored, result.failed, result.dead, result.waiting) == (8, 0, 1, None)
    assert result.checkpoints == {("b-run", 1), ("b-run", 3), ("b2", 1), ("b2", 2), ("b2", 3), ("b2", 4),
                                  ("b4", 1)}
    assert worker.queue.backlog() == 0
    dead = worker.queue.deadletters()
    assert [d["payload"]["id"] for d in dead] == ["bad"] and dead[0]["error"].startswith("invalid payload: ")
    every = {"words.count", "words.chars", "shy.ok"}  # the shy scorer's batch failed: one by one
    assert scored(worker.store) == {"s0": every, "s1": every}
    run = read.get_run(worker.store, "b-run")
    assert run is not None and run["rubrics"] == ["helpful"] and run["last_step"] == 3
    other = read.get_run(worker.store, "b2")
    assert other is not None and other["rubrics"] is None and other["last_step"] == 4
    # The largest count a sender announced; none for a bool, zero, negative or a string.
    assert read.step_evaluation(worker.store, "b-run", 1)["expected"] == 2
    assert read.step_evaluation(worker.store, "b4", 1)["expected"] == 1
    for step in (1, 2, 3, 4):
        assert read.step_evaluation(worker.store, "b2", step)["expected"] is None
    # Samples scored per scorer family (not per score), shared through Redis for /metrics.
    counts = read_shared(worker.queue.redis, worker.queue.keys)
    assert counts[("judgeserve_samples_scored_total", (("scorer", "words"),))] == 8
    assert counts[("judgeserve_samples_scored_total", (("scorer", "shy"),))] == 8
    assert result.failed == 0 and status_rows(worker.store) == []
    # The run's rubrics reach the scorers of its later samples, which do not name them.
    batch(worker, payload(7, run="b3", rubrics=["helpful"]))
    words.seen.clear()
    batch(worker, payload(8, run="b3"), payload(9, run="b3", rubrics=["concise"]))
    assert [(i, c.rubrics) for i, c in words.seen] == [("s8", ["helpful"]), ("s9", ["concise"])]


def test_rubrics_of_a_stored_run_are_read_once_and_an_unknown_run_has_none(
    settings: Settings, make_worker: Callable[..., Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    words = Words()
    worker = make_worker(scorers=[words], hooks=())
    other = Store(settings.database_url)
    with other.begin() as conn:
        other.upsert_run(conn, "known", 1, ["safe"])
    other.close()
    reads: list[str] = []
    real = read.get_run

    def get_run(source: Any, name: str) -> Any:
        reads.append(name)
        return real(source, name)

    monkeypatch.setattr(read, "get_run", get_run)
    batch(worker, payload(0, run="known"), payload(1, run="new"))
    batch(worker, payload(2, run="known"), payload(3, run="new"))
    assert [(i, c.rubrics) for i, c in words.seen] == [
        ("s0", ["safe"]), ("s1", None), ("s2", ["safe"]), ("s3", None)]
    # A run not stored yet is looked up again: another sender may have stored it since.
    assert sorted(reads) == ["known", "new", "new"]


def test_a_new_runs_rubrics_reach_its_samples_that_name_none(
    settings: Settings, make_worker: Callable[..., Worker]
) -> None:
    words = Words()
    worker = make_worker(scorers=[words], hooks=())
    # Its first batch names them on one sample only, after one that names none.
    batch(worker, payload(0, run="fresh"), payload(1, run="fresh", rubrics=["helpful"]))
    batch(worker, payload(2, run="fresh"))
    # Naming other rubrics later changes them for the samples after, as in the store.
    batch(worker, payload(3, run="fresh", rubrics=["concise"]))
    batch(worker, payload(4, run="fresh"))
    assert [(i, c.rubrics) for i, c in words.seen] == [
        ("s0", ["helpful"]), ("s1", ["helpful"]), ("s2", ["helpful"]), ("s3", ["concise"]),
        ("s4", ["concise"])]
    run = read.get_run(worker.store, "fresh")
    assert run is not None and run["rubrics"] == ["concise"]


def test_a_scorer_that_fails_costs_only_its_own_scores_and_says_why(
    settings: Settings, make_worker: Callable[..., Worker], caplog: pytest.LogCaptureFixture
) -> None:
    s = settings.model_copy(update={"max_deliveries": 1})  # out of attempts at once
    picky, words = Picky(), Words()
    worker = make_worker(settings=s, scorers=[words, picky], hooks=())
    result = batch(worker, payload(0), payload(1, text="BAD one"), payload(2, text="  "),
                   payload(3, text="BOOM"), payload(4))
    assert (result.stored, result.failed, result.dead) == (5, 2, 2)
    both = {"words.count", "words.chars", "picky.ok"}
    alone = {"words.count", "words.chars"}
    assert scored(worker.store) == {"s0": both, "s1": alone, "s2": alone, "s3": alone, "s4": both}
    # The batch failed on s1: each of its samples then alone (s2 and s3 never reach it).
    assert picky.calls == [["s0", "s1", "s4"], ["s0"], ["s1"], ["s4"]]
    assert "scorer picky failed on a batch; isolating samples" in caplog.messages
    assert status_rows(worker.store) == [
        (1, "picky", "failed", "KeyError: 'boom'", 1),
        (1, "picky", "failed", "ValueError: cannot score s1", 1),
        (1, "picky", "skipped", "empty completion", 1),
    ]
    dead = {d["payload"]["id"]: d for d in worker.queue.deadletters()}
    assert sorted(dead) == ["s1", "s3"]
    assert dead["s1"]["error"].startswith("picky: ValueError: cannot score s1\nsecond line\nTraceback")
    assert ", in score\n" in dead["s1"]["error"]  # the traceback reaches the scorer's own frame
    assert dead["s3"]["error"].startswith("picky: KeyError: 'boom'\n")
    assert dead["s1"]["payload"]["only"] == ["picky"] and worker.queue.backlog() == 0


def test_a_failed_scorer_is_retried_alone_on_its_sample(
    settings: Settings, make_worker: Callable[..., Worker]
) -> None:
    s = settings.model_copy(update={"max_deliveries": 3, "retry_delay_s": 0.0})
    class Choosy(Picky):
        name = "choosy"

    picky, words, choosy = Picky(), Words(), Choosy()
    worker = make_worker(settings=s, scorers=[words, picky, choosy], hooks=())
    result = batch(worker, payload(0), payload(1, text="BAD"))
    assert (result.stored, result.failed, result.dead) == (2, 1, 0)
    assert worker.queue.promote_due_retries() == 1
    entries = worker.queue.read(10, block_ms=50)
    assert [(e.payload["id"], e.payload["only"], e.payload["attempt"]) for e in entries] == [
        ("s1", ["choosy", "picky"], 1)]
    words.seen.clear()
    picky.calls.clear()
    again = worker.process(entries)
    # Only the scorers that failed run again; the words scorer's scores are not redone.
    assert words.seen == [] and picky.calls == [["s1"], ["s1"]]  # the batch of one, then alone
    assert (again.stored, again.failed, again.dead) == (1, 1, 0)
    assert status_rows(worker.store) == [(1, "choosy", "failed", "ValueError: cannot score s1", 2),
                                         (1, "picky", "failed", "ValueError: cannot score s1", 2)]
    assert worker.queue.promote_due_retries() == 1
    last = worker.process(worker.queue.read(10, block_ms=50))
    assert (last.stored, last.failed, last.dead) == (1, 1, 1)  # the third attempt: dead-lettered
    error = worker.queue.deadletters()[0]["error"]
    # Each scorer's error, in the order the scorers ran.
    assert error.startswith("picky: ValueError: cannot score s1\n")
    assert "\nchoosy: ValueError: cannot score s1\n" in error


def test_scorers_disabled_in_the_settings_are_named_on_each_sample_they_skip(
    settings: Settings, make_worker: Callable[..., Worker]
) -> None:
    off = ["diversity", "judge", "memorization", "reference", "reference_lc", "repetition", "truncation"]
    s = settings.model_copy(update={"disabled_scorers": [*off, "no-such-scorer"]})
    worker = make_worker(settings=s, hooks=())
    assert [x.name for x in worker.sample_scorers] == ["length"] and worker.set_scorers == []
    assert worker.disabled == sorted(off)
    batch(worker, payload(0), payload(1), payload(2, only=["length"]))
    assert status_rows(worker.store) == [(1, name, "disabled", DISABLED, 2) for name in sorted(off)]
    assert all(sc.startswith("length.") for x in scored(worker.store).values() for sc in x)
    # Scorers handed over by the caller: nothing is named disabled.
    given = make_worker(settings=s, scorers=[Words()], hooks=())
    assert given.disabled == []


def test_only_the_scorers_an_entry_names_run_on_it(settings: Settings, make_worker: Callable[..., Worker]) -> None:
    picky, words = Picky(), Words()
    worker = make_worker(scorers=[picky, words], hooks=())
    batch(worker, payload(0, only=["picky"]), payload(1, only=["words"], text="BAD"), payload(2))
    assert scored(worker.store) == {"s0": {"picky.ok"}, "s1": {"words.count", "words.chars"},
                                    "s2": {"words.count", "words.chars", "picky.ok"}}
    assert picky.calls == [["s0", "s2"]] and [i for i, _ in words.seen] == ["s1", "s2"]
    batch(worker, payload(3, only=["words"]), payload(4, text=" "))  # nothing for picky to score
    assert picky.calls == [["s0", "s2"]] and [i for i, _ in words.seen] == ["s1", "s2", "s3", "s4"]


def test_a_scorer_that_answers_for_too_few_samples_is_asked_one_sample_at_a_time(
    settings: Settings, make_worker: Callable[..., Worker]
) -> None:
    class Short(Words):
        name = "short"

        def score(self, samples: Sequence[Sample]) -> list[list[Score]]:
            return super().score(samples)[:1]  # scores for the first sample only

    worker = make_worker(scorers=[Short()], hooks=())
    batch(worker, payload(0), payload(1), payload(2))
    assert scored(worker.store) == {f"s{i}": {"words.count", "words.chars"} for i in range(3)}


def test_a_rescore_entry_replaces_the_stored_scores_a_redelivery_does_not(
    settings: Settings, make_worker: Callable[..., Worker]
) -> None:
    worker = make_worker(scorers=[Words()], hooks=())

    def count(i: str) -> float:
        sample = read.get_sample(worker.store, "b-run", i)
        assert sample is not None
        return float(next(sc["value"] for sc in sample["scores"] if sc["scorer"] == "words.count"))

    batch(worker, payload(0, text="one"), payload(1, text="one"))
    batch(worker, payload(0, text="one two", rescore=True), payload(1, text="one two"))
    assert (count("s0"), count("s1")) == (2.0, 1.0)


def test_each_probe_is_scored_against_its_previous_answer(settings: Settings, make_worker: Callable[..., Worker]) -> None:
    class Baseline(Words):
        name = "base"
        wants_baseline = True

    base = Baseline()
    worker = make_worker(scorers=[Words(), base], hooks=())  # one scorer wants it: it is read
    batch(worker, payload(0, step=1, probe_id="p1", text="old one"), payload(1, step=1, probe_id="p2", text="old two"))
    base.seen.clear()
    batch(worker, payload(2, step=2, probe_id="p1"), payload(3, step=2, probe_id="p3"), payload(4, step=2),
          payload(5, run="other", step=2, probe_id="p2"))
    assert [(i, c.baseline) for i, c in base.seen] == [("s2", "old one"), ("s3", None), ("s4", None), ("s5", None)]


def test_a_sample_whose_context_cannot_be_read_is_dead_lettered_alone(
    settings: Settings, make_worker: Callable[..., Worker], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Baseline(Words):
        wants_baseline = True

    real = read.previous_samples

    def previous(source: Any, run: str, step: int, probes: list[str]) -> dict[str, Any]:
        if "cursed" in probes:
            raise StoreError("database refused the read: invalid byte sequence")
        return real(source, run, step, probes)

    monkeypatch.setattr(read, "previous_samples", previous)
    worker = make_worker(scorers=[Baseline()], hooks=())
    result = batch(worker, payload(0, probe_id="p0"), payload(1, probe_id="cursed"), payload(2, probe_id="p2"))
    assert (result.stored, result.dead) == (2, 1)
    dead = worker.queue.deadletters()
    assert [d["payload"]["id"] for d in dead] == ["s1"]
    assert dead[0]["error"] == "cannot read its context: StoreError: database refused the read: invalid byte sequence"
    assert sorted(scored(worker.store)) == ["s0", "s2"] and worker.queue.backlog() == 0
    assert caplog.messages[0] == ("contexts failed for a batch (database refused the read: "
                                  "invalid byte sequence); one sample at a time")


class FlakyStore(Store):
    """A real store whose commits fail while ``down``, and that refuses POISON samples."""

    down = False

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        with super().begin() as conn:
            yield conn
            if self.down:
                raise StoreUnavailable("commit failed: server closed the connection")

    def save_samples(self, conn: Connection, items: Any) -> None:
        if any("POISON" in s.completion for s in items):
            try:
                raise ValueError("value too long for type character varying(10)")
            except ValueError as e:
                raise StoreError("database refused the write") from e
        super().save_samples(conn, items)


def test_a_sample_the_store_refuses_is_dead_lettered_with_the_database_message(
    settings: Settings, make_worker: Callable[..., Worker], caplog: pytest.LogCaptureFixture
) -> None:
    store = FlakyStore(settings.database_url)
    worker = make_worker(store=store, scorers=[Words(), Picky()], hooks=())
    result = batch(worker, payload(0, text=" "), payload(1, text="POISON"), payload(2, text=" "))
    assert (result.stored, result.dead) == (2, 1)
    dead = worker.queue.deadletters()
    assert [d["payload"]["id"] for d in dead] == ["s1"]
    assert dead[0]["error"] == ("the store refused it: StoreError: database refused the write "
                                "(ValueError: value too long for type character varying(10))")
    assert sorted(scored(store)) == ["s0", "s2"] and worker.queue.backlog() == 0
    assert caplog.messages[0] == (
        "the store refused a batch (StoreError: database refused the write (ValueError: value too "
        "long for type character varying(10))); storing one sample at a time")
    # Counted once per stored sample, though the batch was tried whole first.
    assert status_rows(store) == [(1, "picky", "skipped", "empty completion", 2)]
    store.close()


def test_store_down_keeps_the_batch_pending_and_stores_it_once_later(
    settings: Settings, make_worker: Callable[..., Worker]
) -> None:
    store = FlakyStore(settings.database_url)
    picky = Picky()
    worker = make_worker(store=store, scorers=[Words(), picky], hooks=())
    store.down = True
    worker.queue.add([payload(0), payload(1, text=" "), payload(2)])
    entries = worker.queue.read(10, block_ms=50)
    result = worker.process(entries)
    assert result.waiting == "store unavailable: commit failed: server closed the connection"
    assert worker._held() == [e.id for e in entries]
    info = worker.queue.redis.xpending(worker.queue.keys.samples, "workers")
    assert info["pending"] == 3 and worker.queue.deadletters() == []  # type: ignore[index]
    again = worker.resume()
    assert again.waiting is not None and again.waiting.startswith("store unavailable")
    store.down = False
    done = worker.resume()
    assert (done.waiting, done.stored, done.dead) == (None, 3, 0)
    assert worker._held() == [] and worker.queue.backlog() == 0
    assert picky.calls == [["s0", "s2"]]  # scored once, before the outage
    assert sorted(scored(store)) == ["s0", "s1", "s2"]
    assert status_rows(store) == [(1, "picky", "skipped", "empty completion", 1)]
    assert worker.resume().stored == 0  # nothing held any more
    store.close()


def test_redis_down_while_acknowledging_holds_the_stored_batch(
    settings: Settings, make_worker: Callable[..., Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis

    worker = make_worker(scorers=[Words()], hooks=())
    worker.queue.add([payload(0), payload(1)])
    entries = worker.queue.read(10, block_ms=50)
    real = worker.queue.redis.pipeline
    fail = [True]

    def pipeline(**kw: Any) -> Any:
        if fail[0]:
            raise redis.ConnectionError("Connection refused")
        return real(**kw)

    monkeypatch.setattr(worker.queue.redis, "pipeline", pipeline)
    result = worker.process(entries)
    assert result.waiting is not None and result.waiting.startswith("Redis unavailable: ")
    assert "Connection refused" in result.waiting
    assert worker._held() == [e.id for e in entries]
    assert sorted(scored(worker.store)) == ["s0", "s1"]  # stored already; acknowledged not yet
    fail[0] = False
    done = worker.resume()
    assert (done.waiting, done.stored) == (None, 2) and worker.queue.backlog() == 0
