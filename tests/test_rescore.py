"""``judgeserve rescore``: samples scored before a scorer could run (here: the run's
memorization index was built after its samples were scored) get that scorer's scores,
once, with the checkpoints' aggregates recomputed; a second run adds no rows."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from judgeserve import read
from judgeserve.detectors.length import LengthScorer
from judgeserve.detectors.memorization import MemorizationScorer, build_index, run_index_dir
from judgeserve.exceptions import ConfigError
from judgeserve.rescore import parse_steps
from judgeserve.settings import Settings
from judgeserve.store import Store, scores
from judgeserve.stream import Queue
from judgeserve.worker import Worker

from .conftest import wait_for

RUN = "late-index"
TRAINING = [
    "the quick brown fox jumps over the lazy dog while the farmer sleeps in the warm afternoon sun "
    "and the cows wander slowly across the green field towards the old wooden barn by the river",
    "a completely different document about ships sailing across the cold northern sea at night",
]


def test_parse_steps() -> None:
    assert parse_steps(None) == (None, None) and parse_steps("") == (None, None)
    assert parse_steps("100:200") == (100, 200) and parse_steps("100:") == (100, None)
    assert parse_steps(":200") == (None, 200) and parse_steps("300") == (300, 300)
    for bad in ("a:b", ":", "5:3", "-1"):
        with pytest.raises(ConfigError, match="--steps"):
            parse_steps(bad)


@pytest.fixture
def worker(settings: Settings, make_worker: Callable[..., Worker]) -> Iterator[Worker]:
    w = make_worker(scorers=[LengthScorer(), MemorizationScorer(settings=settings)], hooks=())
    t = threading.Thread(target=w.run, daemon=True)
    t.start()
    yield w
    w.stop()
    t.join(timeout=10)


def rescore(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JUDGESERVE_REDIS_URL": settings.redis_url,
           "JUDGESERVE_DATABASE_URL": settings.database_url,
           "JUDGESERVE_STREAM_PREFIX": settings.stream_prefix,
           "JUDGESERVE_INDEX_DIR": str(settings.index_dir)}
    return subprocess.run([sys.executable, "-m", "judgeserve.cli", "rescore", "--run", RUN, *args],
                          capture_output=True, text=True, env=env, timeout=110)


def score_rows(store: Store, scorer_prefix: str) -> list[tuple[str, str, float]]:
    q = sa.select(scores.c.sample_id, scores.c.scorer, scores.c.value).where(
        scores.c.run == RUN, scores.c.scorer.startswith(scorer_prefix))
    with store.engine.connect() as conn:
        return sorted((str(a), str(b), float(c)) for a, b, c in conn.execute(q))


def test_rescore_after_the_index_is_built(settings: Settings, worker: Worker, tmp_path: Path) -> None:
    queue = Queue.from_settings(settings, create_group=False)
    copied = TRAINING[0]
    payloads = [
        {"run": RUN, "step": step, "id": f"s{step}-{i}", "prompt": "p", "created": time.time(),
         "completion": copied if i == 0 else f"an original answer number {i} at step {step}"}
        for step in (100, 200, 300) for i in range(2)
    ]
    queue.add(payloads)
    store = Store(settings.database_url)
    try:
        wait_for(lambda: read.count_scored(store, RUN) == 6, timeout=60)
        assert score_rows(store, "memorization.") == []  # no index yet: no scores at all
        data = tmp_path / "train.jsonl"
        data.write_text("".join(f'{{"text": "{t}"}}\n' for t in TRAINING))
        build_index([str(data)], run_index_dir(RUN, settings.index_dir), min_span=10)

        r = rescore(settings, "--scorer", "memorization", "--timeout", "60")
        assert r.returncode == 0, r.stderr
        assert f"queued 6 samples of run '{RUN}' for memorization" in r.stdout
        assert "processed 6" in r.stdout
        memorized = {sid: v for sid, name, v in score_rows(store, "memorization.memorized")}
        assert memorized == {f"s{s}-{i}": float(i == 0) for s in (100, 200, 300) for i in range(2)}
        # The checkpoints' aggregates were recomputed with the new scores.
        wait_for(lambda: all("memorization.memorized" in read.step_aggregates(store, RUN, s)
                             for s in (100, 200, 300)), timeout=30)
        assert read.step_aggregates(store, RUN, 200)["memorization.memorized"]["mean"] == 0.5

        # Idempotent: again (for one step), and nothing is added.
        before = score_rows(store, "")
        r = rescore(settings, "--scorer", "memorization", "--steps", "200:200", "--timeout", "60")
        assert r.returncode == 0 and "queued 2 samples" in r.stdout, r.stderr
        assert score_rows(store, "") == before
    finally:
        store.close()
        queue.close()


def test_rescore_replaces_what_was_stored(settings: Settings, worker: Worker) -> None:
    queue = Queue.from_settings(settings, create_group=False)
    queue.add([{"run": RUN, "step": 1, "id": "a", "prompt": "p", "completion": "one two three",
                "created": time.time()}])
    store = Store(settings.database_url)
    try:
        wait_for(lambda: read.count_scored(store, RUN) == 1, timeout=60)
        with store.begin() as conn:  # a verdict gone stale (a fixed scorer would differ)
            conn.execute(sa.update(scores).where(scores.c.scorer == "length.tokens").values(value=999.0))
        r = rescore(settings, "--scorer", "length", "--timeout", "60")
        assert r.returncode == 0, r.stderr
        assert score_rows(store, "length.tokens") == [("a", "length.tokens", 3.0)]
    finally:
        store.close()
        queue.close()


def test_rescore_refuses_what_it_cannot_do(settings: Settings) -> None:
    r = rescore(settings, "--scorer", "memorisation")
    assert r.returncode == 2 and "unknown scorer 'memorisation'" in r.stderr and "memorization" in r.stderr
    r = rescore(settings, "--steps", "9:1")
    assert r.returncode == 2 and "--steps" in r.stderr
    r = rescore(settings)  # the run does not exist
    assert r.returncode == 1 and f"no run named '{RUN}'" in r.stderr
    assert "Traceback" not in r.stderr
