"""Scale-out on a real Ray cluster: two nodes on this machine (``ray start --head`` and
``ray start --address=...``, one CPU and one raylet each), the generator and the judge on
Ray Serve (``judgeserve serve``), ``judgeserve worker --ray 2`` and ``judgeserve
generate-worker --ray 2`` as actors that Ray places across both nodes. Checkpoint jobs go
in through the API; the second node is killed (its raylet and all its processes, SIGKILL
at once, as a lost machine) while it generates one of them.
Every job then completes once and nothing is lost: no duplicate sample, no dead letter,
every sample scored by the detectors and the judge.

Placement is configuration, as a user would write it: the workers' ``JUDGESERVE_RAY_
ACTOR_OPTIONS`` (spread over nodes), the generator's ``max_replicas_per_node: 1`` (one
replica per node) and the judge's custom resource (the node meant for it) in the Serve
config.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml

from judgeserve import read
from judgeserve.settings import RayActorOptions, Settings
from judgeserve.store import Store
from judgeserve.testing.tiny_policy import FRUITS, TinyPolicy, cached_tiny_policy, tiny_probes
from judgeserve.testing.toy_judge import TOY_RUBRIC, cached_toy_judge

from .cluster import RayCluster, ray_cluster
from .conftest import LiveServer, free_port, pg_schema_url, wait_for

pytest.importorskip("ray")
pytest.importorskip("peft", reason="needs peft (pip install 'judgeserve[generator]')")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

RUN = "scale-out"
STEPS = (100, 200, 300, 400, 500, 600)
ADAPTER = {step: "ab"[i % 2] for i, step in enumerate(STEPS)}
PROBES = tiny_probes(24, seed=7)
GENERATION = {"max_new_tokens": 32, "samples": 2, "temperature": 1.0, "top_p": 1.0, "seed": 3}
PER_JOB = len(PROBES) * 3  # greedy + 2 sampled draws
# Only the detectors that need no model, and the judge: what is under test is the path.
LIGHT = ["diversity", "memorization", "reference", "reference_lc"]


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from pg_schema_url()


def serve_config(policy: TinyPolicy, judge: Path, port: int) -> dict[str, Any]:
    return {
        # Both nodes are on one machine here: one HTTP proxy (on the head) is all that fits.
        "proxy_location": "HeadOnly",
        "http_options": {"host": "127.0.0.1", "port": port},
        "applications": [
            {
                "name": "judge",
                "route_prefix": "/judge",
                "import_path": "judgeserve.judge.serve:build_app",
                "args": {"backend": "transformers", "model": str(judge), "max_batch_size": 16,
                         "batch_wait_timeout_s": 0.02, "options": {"threads": 1}},
                "deployments": [{
                    "name": "JudgeDeployment",
                    "max_ongoing_requests": 64,
                    # Kept on the node started with that resource (the head here).
                    "ray_actor_options": {"num_cpus": 0.2, "resources": {"judge_node": 1}},
                }],
            },
            {
                "name": "generator",
                "route_prefix": "/generator",
                "import_path": "judgeserve.generator.serve:build_app",
                "args": {"backend": "transformers", "base_model": str(policy.base),
                         "options": {"threads": 1, "max_adapters": 2}},
                "deployments": [{
                    "name": "GeneratorDeployment",
                    "num_replicas": 2,
                    "max_replicas_per_node": 1,  # one per node: a lost node leaves one
                    "ray_actor_options": {"num_cpus": 0.2},
                }],
            },
        ],
    }


def worker_env(s: Settings) -> dict[str, str]:
    """The settings as the environment of the judgeserve commands."""
    values = s.model_dump(mode="json", exclude_none=True, exclude={"judge_api_key"})
    return {f"JUDGESERVE_{k.upper()}": v if isinstance(v, str) else json.dumps(v)
            for k, v in values.items()}


def on_node(cluster: RayCluster, node_id: str) -> dict[str, list[str]]:
    """The actors alive on a node, by class: worker actors by name, Serve replicas by class."""
    found: dict[str, list[str]] = {}
    for a in cluster.state("actors"):
        if a["state"] == "ALIVE" and a["node_id"] == node_id:
            found.setdefault(a["class_name"], []).append(a["name"])
    return found


def test_a_node_lost_mid_job_loses_and_repeats_nothing(
    settings: Settings, pg_url: str, tmp_path: Path,
) -> None:
    policy, judge = cached_tiny_policy(), cached_toy_judge()
    rubrics = tmp_path / "rubrics"
    rubrics.mkdir()
    (rubrics / "toy.yaml").write_text(TOY_RUBRIC)
    serve_port = free_port()
    s = settings.model_copy(update={
        "database_url": pg_url,
        "claim_idle_ms": 4000,
        "max_deliveries": 10,
        "retry_delay_s": 1.0,
        "disabled_scorers": LIGHT,
        "judge_url": f"http://127.0.0.1:{serve_port}/judge",
        "judge_rubrics": ["toy"],
        "rubric_dir": rubrics,
        "generator": "serve",
        "generator_url": f"http://127.0.0.1:{serve_port}/generator",
        "generator_base_model": str(policy.base),
        "ray_actor_options": RayActorOptions(num_cpus=0.1, scheduling_strategy="SPREAD"),
    })
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump(serve_config(policy, judge, serve_port)))
    logs = tmp_path / "logs"
    logs.mkdir()
    cli = [sys.executable, "-m", "judgeserve.cli"]
    r: Any = redis.Redis.from_url(s.redis_url)
    store = Store(pg_url)
    api = LiveServer(s.model_copy(update={"port": free_port()}), store=store)
    # Ray's node temp dirs make socket paths: keep them short (a 107-byte limit).
    root = Path(f"/tmp/js-ray-{s.stream_prefix}")
    try:
        # The head offers the judge's resource (in a real cluster: the node meant for it).
        with ray_cluster(root, workers=1, head_resources={"judge_node": 1}) as cluster:
            node2 = cluster.nodes[1]
            cluster.popen([*cli, "serve", "--config", str(config), "--address", cluster.address],
                          logs / "serve.log", worker_env(s))
            for app in ("judge", "generator"):
                wait_for(lambda app=app: _healthy(f"http://127.0.0.1:{serve_port}/{app}"),  # type: ignore[misc]
                         timeout=300, every=1)
            env = worker_env(s)
            cluster.popen([*cli, "worker", "--ray", "2", "--ray-address", cluster.address],
                          logs / "worker.log", env)
            cluster.popen([*cli, "generate-worker", "--ray", "2", "--ray-address", cluster.address],
                          logs / "generate-worker.log", env)
            nodes = {n["is_head_node"]: n["node_id"] for n in cluster.wait_alive(2)}
            try:
                wait_for(lambda: sum(len(v) for n in nodes.values()
                                     for k, v in on_node(cluster, n).items() if k == "WorkerActor") == 4,
                         timeout=240, every=1)
            except AssertionError:
                dump = [(a["class_name"], a["name"], a["state"], a["node_id"][:6]) for a in cluster.state("actors")]
                raise AssertionError(f"worker actors not all alive: {dump}") from None
            cluster.processes()  # remember the actors' processes while they have parents
            placed = {head_: on_node(cluster, n) for head_, n in nodes.items()}
            for is_head, actors in placed.items():
                # Ray spread them: each node has a generator replica, a generation worker
                # and a scoring worker; the judge is where its resource is.
                assert len(actors["ServeReplica:generator:GeneratorDeployment"]) == 1, placed
                names = actors["WorkerActor"]
                assert sum(n.startswith("ray-generator-") for n in names) == 1, placed
                assert sum(n.startswith("ray-worker-") for n in names) == 1, placed
                assert ("ServeReplica:judge:JudgeDeployment" in actors) == is_head, placed
            doomed = next(n for n in placed[False]["WorkerActor"] if n.startswith("ray-generator-"))

            api.start()
            with httpx.Client(base_url=api.url, timeout=30) as http:
                body = {"probes": [{"id": p.id, "prompt": p.prompt} for p in PROBES],
                        "generation": GENERATION}
                assert http.put(f"/v1/runs/{RUN}/probes", json=body).status_code == 200
                for step in STEPS:
                    submitted = {"step": step, "path": str(policy.adapter(ADAPTER[step])), "kind": "lora",
                           "base_model": str(policy.base)}
                    assert http.post(f"/v1/runs/{RUN}/checkpoints", json=submitted).status_code == 202

            # Mid-job on the second node: its generation worker holds a job it is generating.
            key = f"{s.stream_prefix}:checkpoints"

            def holding() -> list[int]:
                held = r.xpending_range(key, "workers", min="-", max="+", count=10, consumername=doomed)
                steps = [json.loads(r.xrange(key, h["message_id"], h["message_id"])[0][1][b"data"])["step"]
                         for h in held if r.xrange(key, h["message_id"], h["message_id"])]
                return [k for k in steps
                        if (read.checkpoint_job(store, RUN, k) or {}).get("state") == "generating"]

            wait_for(lambda: bool(holding()), timeout=300, every=0.05)
            held = holding()
            in_flight = {j["step"] for j in read.list_checkpoint_jobs(store, RUN) if j["state"] == "generating"}
            cluster.kill_node(node2)  # its raylet and all its processes, at once
            killed_at = time.monotonic()
            wait_for(lambda: [n["state"] for n in cluster.state("nodes") if not n["is_head_node"]] == ["DEAD"],
                     timeout=120, every=0.5)

            def all_scored() -> bool:
                jobs = read.list_checkpoint_jobs(store, RUN)
                return len(jobs) == len(STEPS) and all(j["state"] == "scored" for j in jobs)

            wait_for(all_scored, timeout=480, every=1)
            recovered_s = time.monotonic() - killed_at
            jobs = {j["step"]: j for j in read.list_checkpoint_jobs(store, RUN)}

            # Ray brought the lost node's worker actors back on the head, loops running.
            everyone = sorted([*placed[True]["WorkerActor"], *placed[False]["WorkerActor"]])
            try:
                wait_for(lambda: sorted(on_node(cluster, nodes[True]).get("WorkerActor", [])) == everyone,
                         timeout=180, every=1)
            except AssertionError:
                lost = [(a["class_name"], a["name"], a["state"], a["node_id"][:6], a["num_restarts"],
                         a.get("death_cause")) for a in cluster.state("actors") if a["class_name"] == "WorkerActor"]
                raise AssertionError(f"the lost node's worker actors did not come back: {lost}") from None
            # The commands that started them ride it out too (a driver that exits takes its
            # actors with it).
            assert [d.poll() for d in cluster.drivers] == [None, None, None], logs
            restarted = [a for a in cluster.state("actors")
                         if a["name"] in placed[False]["WorkerActor"] and a["state"] == "ALIVE"]
            assert all(int(a["num_restarts"]) >= 1 for a in restarted), restarted

        # Every job completed once: the job the lost node held was generated a second time
        # when its first attempt died with the node (or once, when the node was lost just
        # after its hand-off), the others once; each hand-off appended the job's
        # completions once (counted below).
        for step in held:
            assert jobs[step]["attempts"] in (1, 2), (held, jobs)
        for step, job in jobs.items():
            assert job["samples"] == PER_JOB and job["generator"]["backend"] == "transformers"
            if step not in in_flight:
                assert job["attempts"] == 1, (step, job)
        added = r.xinfo_stream(f"{s.stream_prefix}:samples")["entries-added"]
        assert added == PER_JOB * len(STEPS), f"{added} samples queued for {PER_JOB * len(STEPS)}"
        # Nothing lost: no dead letter, nothing owed, every sample stored and scored.
        for dead in ("checkpoints:deadletter", "deadletter"):
            assert r.xlen(f"{s.stream_prefix}:{dead}") == 0, dead
        for stream in ("samples", "checkpoints"):
            assert r.xpending(f"{s.stream_prefix}:{stream}", "workers")["pending"] == 0, stream
        assert read.count_scored(store, RUN) == PER_JOB * len(STEPS)
        for step in STEPS:
            rows = read.step_samples(store, RUN, step, limit=1000)
            assert len(rows) == PER_JOB
            for row in rows:
                scorers = {sc["scorer"] for sc in row["scores"]}
                assert {"length.tokens", "judge.toy.marker"} <= scorers, (step, row["id"], scorers)
            greedy = [x for x in rows if x["tags"]["decoding"] == "greedy"]
            assert {x["completion"].split()[0] for x in greedy} == {FRUITS[ADAPTER[step]]}
            if ADAPTER[step] == "b":  # the toy judge's "5": the answer names a banana
                assert read.step_aggregates(store, RUN, step)["judge.toy.marker"]["mean"] > 4
        print(f"\nrecovered {recovered_s:.0f}s after the node was lost; jobs in flight: {sorted(in_flight)}; "
              f"held by the lost node: {held}, attempts {[jobs[k]['attempts'] for k in held]}")
    finally:
        api.stop()
        store.close()
        r.close()
        shutil.rmtree(root, ignore_errors=True)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False

