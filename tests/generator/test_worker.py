"""The generation worker on a real engine (transformers + PEFT on the tiny policy), real
Redis and a real store: checkpoint jobs become scored samples, once; a vanished folder is
a dead letter with its reason and the next job runs; a generator that cannot be reached
is retried, then dead-lettered; a worker killed mid-job leaves the job to another one,
which completes it once."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from judgeserve import read
from judgeserve.detectors.length import LengthScorer
from judgeserve.generation_worker import GenerationWorker
from judgeserve.probes import GenerationConfig, Probe, ProbeSet
from judgeserve.settings import Settings
from judgeserve.store import Store
from judgeserve.stream import Queue
from judgeserve.testing.tiny_policy import FRUITS, TinyPolicy, tiny_probes
from judgeserve.worker import Worker

from ..conftest import free_port, run_cli, wait_for

CONFIG = GenerationConfig(max_new_tokens=12, samples=1, temperature=0.5, top_p=1.0, seed=5)


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    s = Store.from_settings(settings)
    yield s
    s.close()


@pytest.fixture
def jobs(settings: Settings) -> Iterator[Queue]:
    """The checkpoint stream, as the API appends to it."""
    q = Queue.from_settings(settings, "test-producer", stream="checkpoints", create_group=False)
    yield q
    q.close()


@pytest.fixture
def r(settings: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.redis_url)
    yield client
    client.close()


def set_probes(store: Store, run: str, probes: list[Probe], config: GenerationConfig = CONFIG) -> str:
    ps = ProbeSet(probes=probes, generation=config)
    store.save_probe_set(run, ps.version(), {**ps.model_dump(mode="json"), "completions": ps.completions})
    return ps.version()


def submit(store: Store, jobs: Queue, run: str, step: int, path: Path | str, version: str, **kw: Any) -> None:
    job = {"run": run, "step": step, "path": str(path), "kind": "lora", "probe_set": version, **kw}
    store.queue_checkpoint(run, step, job)  # what POST /checkpoints does
    jobs.add([job])


def stream(r: redis.Redis, settings: Settings, name: str) -> list[dict[str, Any]]:
    return [json.loads(f[b"data"]) | {"_id": i.decode(), **({"_error": f[b"error"].decode()} if b"error" in f else {})}
            for i, f in r.xrange(f"{settings.stream_prefix}:{name}")]


@pytest.fixture
def gen_worker(settings: Settings, store: Store, transformers_generator: Any) -> Iterator[Callable[..., GenerationWorker]]:
    made: list[GenerationWorker] = []

    def make(**kw: Any) -> GenerationWorker:
        w = GenerationWorker(kw.pop("settings", settings), store=store, generator=kw.pop("generator", transformers_generator), **kw)
        made.append(w)
        return w

    yield make
    for w in made:
        w.stop()
        w.close()


def test_a_checkpoint_job_becomes_scored_samples_once(
    settings: Settings, store: Store, jobs: Queue, r: redis.Redis, policy: TinyPolicy,
    probes: list[Probe], gen_worker: Callable[..., GenerationWorker], make_worker: Callable[..., Worker],
) -> None:
    version = set_probes(store, "gen-run", probes)
    submit(store, jobs, "gen-run", 100, policy.adapter("a"), version)
    worker = gen_worker()
    worker.run(idle_exit_s=0.5)
    assert worker.done == 1 and worker.failed == 0

    queued = stream(r, settings, "samples")
    n = len(probes) * 2  # greedy + one sampled draw
    assert len(queued) == n and stream(r, settings, "checkpoints") == []  # handed off, acked
    ids = {s["id"] for s in queued}
    assert ids == {f"s100-{p.id}-{d}" for p in probes for d in ("greedy", "sampled-0")}
    for s in queued:
        assert s["run"] == "gen-run" and s["step"] == 100 and s["expected"] == n
        assert s["checkpoint"] == str(policy.adapter("a"))
        assert s["completion"].split()[0] == FRUITS["a"]  # adapter a's weights made it
        tags = s["tags"]
        assert tags["generator"] == "transformers" and tags["engine"].startswith("transformers ")
        assert tags["adapter"] == str(policy.adapter("a")) and tags["checkpoint_kind"] == "lora"
        assert tags["base_model"] == str(policy.base)
        assert tags["decoding_hash"] == CONFIG.decoding_hash()
        assert tags["finish_reason"] == "stop" and tags["decoding"] in ("greedy", "sampled-0")
    job = read.checkpoint_job(store, "gen-run", 100)
    assert job is not None and job["state"] == "generated" and job["samples"] == n
    assert job["generator"]["backend"] == "transformers" and job["generator"]["kind"] == "lora"
    assert job["attempts"] == 1 and job["reason"] is None and job["finished"] is not None

    # The same checkpoint again (a redelivered or resubmitted job): the same sample ids and,
    # sampling being seeded, the same texts; the store keeps one of each.
    submit(store, jobs, "gen-run", 100, policy.adapter("a"), version)
    worker.run(idle_exit_s=0.5)
    again = stream(r, settings, "samples")[n:]
    assert [(s["id"], s["completion"]) for s in again] == [(s["id"], s["completion"]) for s in queued]

    scorer = make_worker(scorers=[LengthScorer()], hooks=[])
    scorer.run(idle_exit_s=0.5)
    assert read.count_step_samples(store, "gen-run", 100) == n
    wait_for(lambda: (read.checkpoint_job(store, "gen-run", 100) or {}).get("state") == "scored", timeout=30)
    assert read.step_evaluation(store, "gen-run", 100)["expected"] == n
    sample = read.get_sample(store, "gen-run", "s100-q0-greedy")
    assert sample is not None and sample["tags"]["generator"] == "transformers"
    assert [sc["scorer"] for sc in sample["scores"]] == ["length.tokens"]


def test_a_vanished_folder_is_a_dead_letter_and_the_next_job_runs(
    settings: Settings, store: Store, jobs: Queue, r: redis.Redis, policy: TinyPolicy,
    probes: list[Probe], gen_worker: Callable[..., GenerationWorker], tmp_path: Path,
) -> None:
    version = set_probes(store, "gone-run", probes)
    saved = tmp_path / "out" / "checkpoint-100"
    shutil.copytree(policy.adapter("b"), saved)
    submit(store, jobs, "gone-run", 100, saved, version)
    submit(store, jobs, "gone-run", 200, policy.adapter("b"), version)
    shutil.rmtree(saved)  # save_total_limit got there first

    worker = gen_worker()
    worker.run(idle_exit_s=0.5)
    assert (worker.done, worker.failed) == (1, 1)
    (dead,) = stream(r, settings, "checkpoints:deadletter")
    reason = f"checkpoint folder gone: {saved} (deleted by save_total_limit?)"
    assert dead["_error"] == reason and dead["step"] == 100
    failed = read.checkpoint_job(store, "gone-run", 100)
    assert failed is not None and failed["state"] == "failed" and failed["reason"] == reason
    assert read.checkpoint_job(store, "gone-run", 200)["state"] == "generated"  # type: ignore[index]
    assert {s["step"] for s in stream(r, settings, "samples")} == {200}
    # Through the API too: the job list says what happened and why.
    from fastapi.testclient import TestClient

    from judgeserve.app import create_app

    with TestClient(create_app(settings)) as api:
        listed = {j["step"]: j for j in api.get("/v1/runs/gone-run/checkpoints").json()["checkpoints"]}
    assert listed[100]["state"] == "failed" and listed[100]["reason"] == reason
    assert listed[200]["state"] == "generated" and listed[200]["generator"]["backend"] == "transformers"
    # And on the command line.
    env = {"JUDGESERVE_REDIS_URL": settings.redis_url, "JUDGESERVE_STREAM_PREFIX": settings.stream_prefix}
    out = run_cli("deadletter", "list", "--checkpoints", env=env)
    assert out.returncode == 0, out.stderr
    assert f"gone-run@100  {saved}  x1  {reason}" in out.stdout
    assert run_cli("deadletter", "list", env=env).stdout == ""  # the sample stream's: none


def test_a_missing_probe_set_or_broken_job_is_dead_lettered(
    settings: Settings, store: Store, jobs: Queue, r: redis.Redis, policy: TinyPolicy,
    gen_worker: Callable[..., GenerationWorker],
) -> None:
    jobs.add([{"run": "x", "step": 1, "path": str(policy.adapter("a")), "kind": "lora", "probe_set": "0" * 16}])
    jobs.add([{"run": "x", "step": "two", "path": "/p"}])
    gen_worker().run(idle_exit_s=0.5)
    errors = [d["_error"] for d in stream(r, settings, "checkpoints:deadletter")]
    assert errors[0] == f"run 'x' has no probe set {'0' * 16}"
    assert errors[1].startswith("invalid checkpoint job:") and "step" in errors[1]
    assert read.checkpoint_job(store, "x", 1)["state"] == "failed"  # type: ignore[index]


def test_an_unreachable_generator_is_retried_then_dead_lettered(
    settings: Settings, store: Store, jobs: Queue, r: redis.Redis, policy: TinyPolicy,
    probes: list[Probe], gen_worker: Callable[..., GenerationWorker],
) -> None:
    from judgeserve.generator import load_generator

    unreachable = load_generator("serve", url=f"http://127.0.0.1:{free_port()}/generator", timeout=2)
    version = set_probes(store, "down-run", probes)
    submit(store, jobs, "down-run", 10, policy.adapter("a"), version)
    s = settings.model_copy(update={"max_deliveries": 2, "claim_idle_ms": 200})
    worker = gen_worker(settings=s, generator=unreachable)
    (entry,) = worker.queue.read(1, block_ms=100)
    assert worker.process(entry) == "retry"
    job = read.checkpoint_job(store, "down-run", 10)
    assert job is not None and job["state"] == "retrying" and "unreachable" in job["reason"]
    assert stream(r, settings, "checkpoints:deadletter") == []  # still owed
    time.sleep(0.3)  # idle past claim_idle_ms: reclaimed, delivered a second time
    (again,) = worker.queue.read(1, block_ms=100)
    assert again.id == entry.id and again.deliveries == 2
    assert worker.process(again) == "failed"
    (dead,) = stream(r, settings, "checkpoints:deadletter")
    assert dead["_error"].startswith("failed on all 2 deliveries; last: GeneratorError:")
    assert read.checkpoint_job(store, "down-run", 10)["state"] == "failed"  # type: ignore[index]
    unreachable.close()


def _worker_process(settings: Settings, policy: TinyPolicy, name: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "JUDGESERVE_REDIS_URL": settings.redis_url,
        "JUDGESERVE_DATABASE_URL": settings.database_url,
        "JUDGESERVE_STREAM_PREFIX": settings.stream_prefix,
        "JUDGESERVE_CLAIM_IDLE_MS": "1500",
        "JUDGESERVE_GENERATOR": "transformers",
        "JUDGESERVE_GENERATOR_BASE_MODEL": str(policy.base),
        "JUDGESERVE_GENERATOR_OPTIONS": json.dumps({"threads": 1}),
    }
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "judgeserve.cli", "generate-worker", "--name", name],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_worker_killed_mid_job_leaves_it_to_another_which_completes_it_once(
    settings: Settings, store: Store, jobs: Queue, r: redis.Redis, policy: TinyPolicy, tmp_path: Path,
) -> None:
    # A job long enough to be caught in the middle: 40 probes x 4 draws x up to 48 tokens.
    config = GenerationConfig(max_new_tokens=48, samples=3, temperature=1.5, top_p=1.0, seed=1)
    probes = tiny_probes(40, seed=99)
    version = set_probes(store, "kill-run", probes, config)
    n = 40 * 4
    log = tmp_path / "workers.log"
    first = _worker_process(settings, policy, "doomed", log)
    try:
        # Submitted once the worker is up, so it is the one that takes the job.
        wait_for(lambda: b"consuming" in log.read_bytes(), timeout=120, every=0.1)
        submit(store, jobs, "kill-run", 300, policy.adapter("b"), version)
        wait_for(lambda: (read.checkpoint_job(store, "kill-run", 300) or {}).get("state") == "generating",
                 timeout=60, every=0.01)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.kill()
    # Killed mid-job: nothing handed off, the job still pending on the dead consumer.
    assert stream(r, settings, "samples") == []
    pending = r.xpending(f"{settings.stream_prefix}:checkpoints", "workers")
    assert pending["pending"] == 1 and pending["consumers"][0]["name"] == b"doomed"

    second = _worker_process(settings, policy, "heir", log)
    try:
        wait_for(lambda: (read.checkpoint_job(store, "kill-run", 300) or {}).get("state") == "generated",
                 timeout=180, every=0.2)
        time.sleep(2)  # anything a duplicate would add would be there by now
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)
    queued = stream(r, settings, "samples")
    assert len(queued) == n and len({s["id"] for s in queued}) == n  # appended once, no duplicate
    greedy = [s for s in queued if s["tags"]["decoding"] == "greedy"]
    assert len(greedy) == 40 and {s["completion"].split()[0] for s in greedy} == {FRUITS["b"]}
    job = read.checkpoint_job(store, "kill-run", 300)
    assert job is not None and job["attempts"] == 2 and job["samples"] == n
    assert r.xpending(f"{settings.stream_prefix}:checkpoints", "workers")["pending"] == 0
    assert stream(r, settings, "checkpoints:deadletter") == []
    assert second.returncode == 0, log.read_text()[-3000:]


def test_the_heartbeat_keeps_a_long_job_from_being_reclaimed(
    settings: Settings, store: Store, jobs: Queue, r: redis.Redis, policy: TinyPolicy,
    probes: list[Probe], gen_worker: Callable[..., GenerationWorker],
) -> None:
    """A job that takes several claim_idle_ms to generate is not handed to a second
    consumer meanwhile (which would generate it twice)."""
    version = set_probes(store, "long-run", probes)
    submit(store, jobs, "long-run", 7, policy.adapter("a"), version)
    s = settings.model_copy(update={"claim_idle_ms": 150})
    owner = gen_worker(settings=s, consumer="owner")
    rival = Queue.from_settings(s, "rival", stream="checkpoints")
    (entry,) = owner.queue.read(1, block_ms=100)
    claimed: list[int] = []
    stop = threading.Event()

    def keep_claiming() -> None:
        while not stop.is_set():
            claimed.extend(1 for _ in rival.claim_stale(10))
            time.sleep(0.02)

    t = threading.Thread(target=keep_claiming)
    t.start()
    try:
        with owner._heartbeat(entry):
            time.sleep(1.0)  # ~7 x claim_idle_ms "generating"
    finally:
        stop.set()
        t.join()
    assert claimed == []
    assert owner.process(entry) == "generated"
    rival.close()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_generation_workers_run_as_ray_actors(
    settings: Settings, policy: TinyPolicy, probes: list[Probe], r: redis.Redis,
) -> None:
    """`judgeserve generate-worker --ray N`: actors in the consumer group, a shared
    PostgreSQL store, each job generated once."""
    ray: Any = pytest.importorskip("ray")
    from judgeserve.launch import start_actors

    from ..conftest import pg_schema_url

    urls = pg_schema_url()
    pg_url = next(urls)
    s = settings.model_copy(update={
        "database_url": pg_url, "generator": "transformers",
        "generator_base_model": str(policy.base), "generator_options": {"threads": 1},
    })
    store = Store(pg_url)
    jobs = Queue.from_settings(s, "test-producer", stream="checkpoints", create_group=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        actors, refs = start_actors(s, 2, kind="generate")
        version = set_probes(store, "ray-gen", probes)
        for step in (1, 2, 3, 4):
            submit(store, jobs, "ray-gen", step, policy.adapter("ab"[step % 2]), version)
        wait_for(lambda: all((read.checkpoint_job(store, "ray-gen", k) or {}).get("state") == "generated"
                             for k in (1, 2, 3, 4)), timeout=300, every=0.5)
        queued = stream(r, s, "samples")
        assert len(queued) == 4 * len(probes) * 2 and len({(x["step"], x["id"]) for x in queued}) == len(queued)
        for x in queued:
            if x["tags"]["decoding"] == "greedy":
                assert x["completion"].split()[0] == FRUITS["ab"[x["step"] % 2]]
        consumers = {c["name"].decode() for c in r.xinfo_consumers(f"{s.stream_prefix}:checkpoints", "workers")}
        assert consumers <= {"ray-generator-0", "ray-generator-1"} and consumers
        ray.get([a.stop.remote() for a in actors])
        ray.get(refs, timeout=60)
    finally:
        ray.shutdown()
        jobs.close()
        store.close()
        next(urls, None)  # drops the schema


def test_the_finish_reason_is_on_every_generated_sample_and_decides_truncation(
    settings: Settings, store: Store, policy: TinyPolicy, probes: list[Probe], jobs: Queue,
    gen_worker: Callable[..., GenerationWorker], make_worker: Callable[..., Worker],
) -> None:
    """In checkpoint mode judgeserve knows why generation stopped: every sample carries
    it, and the truncation detector takes it over what the text looks like."""
    from judgeserve.detectors.truncation import _CUT_REASONS, TruncationScorer, ending

    short = GenerationConfig(max_new_tokens=2, greedy=True, samples=0, seed=5)
    submit(store, jobs, "cut-run", 10, policy.adapter("b"), set_probes(store, "cut-run", probes, short))
    submit(store, jobs, "whole-run", 10, policy.adapter("b"), set_probes(store, "whole-run", probes))
    gen_worker().run(idle_exit_s=0.5)
    make_worker(scorers=[TruncationScorer()], hooks=[]).run(idle_exit_s=0.5)

    for run, finish, truncated in (("cut-run", "length", True), ("whole-run", "stop", False)):
        got = read.step_samples(store, run, 10, limit=100)
        assert len(got) == len(probes) * (1 if run == "cut-run" else 2)
        for s in got:
            assert s["tags"]["finish_reason"] == finish, s
            [t] = [x for x in s["scores"] if x["scorer"] == "truncation.truncated"]
            assert t["value"] is truncated and t["details"]["source"] == "finish_reason", t
    # Cut after two tokens ("banana cream"), the text alone reads as a whole answer that
    # only lacks its period: without the finish reason these cuts would go unseen.
    cut_texts = [s["completion"] for s in read.step_samples(store, "cut-run", 10, limit=100)]
    assert all(ending(t) not in _CUT_REASONS for t in cut_texts), cut_texts
