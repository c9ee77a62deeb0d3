"""Workers as Ray actors sharing the consumer group and a PostgreSQL store."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from judgeserve import read
from judgeserve.launch import start_actors
from judgeserve.settings import Settings
from judgeserve.store import Store
from judgeserve.stream import Queue

from .conftest import pg_schema_url, wait_for

ray: Any = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from pg_schema_url()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ray_actors_share_the_work_and_survive_a_lost_actor(ray_local: None, settings: Settings, pg_url: str) -> None:
    s = settings.model_copy(update={"database_url": pg_url, "claim_idle_ms": 1000,
                                    "disabled_scorers": ["diversity", "reference", "reference_lc", "judge", "memorization"]})
    store = Store(pg_url)
    q = Queue(s.redis_url, prefix=s.stream_prefix)
    actors, refs = start_actors(s, 2)
    try:
        q.add([{"run": "ray-run", "step": i // 50, "id": f"a{i}", "prompt": "", "completion": f"w {i}"} for i in range(300)])
        wait_for(lambda: read.count_scored(store, "ray-run") == 300, timeout=240)
        ray.kill(actors[0], no_restart=True)  # a node lost with its actor
        q.add([{"run": "ray-run", "step": 9, "id": f"b{i}", "prompt": "", "completion": f"w {i}"} for i in range(300)])
        wait_for(lambda: read.count_scored(store, "ray-run") == 600, timeout=240)
        consumers = {c["name"].decode() for c in q.redis.xinfo_consumers(q.keys.samples, "workers")}
        assert {"ray-worker-0", "ray-worker-1"} <= consumers  # both took part
        time.sleep(0.2)
        assert q.backlog() == 0
    finally:
        ray.get(actors[1].stop.remote())
        ray.get(refs[1], timeout=60)
        q.close()
        store.close()
