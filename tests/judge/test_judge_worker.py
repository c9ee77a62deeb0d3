"""The judge through the whole path: the trainer names rubrics, the worker judges, the
scores land in the store next to the detectors'."""

from __future__ import annotations

import random
import threading
from pathlib import Path

from judgeserve import JudgeClient, read
from judgeserve.detectors.length import LengthScorer
from judgeserve.judge.scorer import JudgeScorer
from judgeserve.settings import Settings
from judgeserve.store import Store
from judgeserve.testing.toy_judge import BAD, GOOD, TOY_RUBRIC, toy_text
from judgeserve.worker import Worker

from ..conftest import LiveServer, wait_for


def test_run_rubrics_reach_the_judge_through_the_worker(
    settings: Settings, transformers_backend: object, tmp_path: Path
) -> None:
    rubric_dir = tmp_path / "rubrics"
    rubric_dir.mkdir()
    (rubric_dir / "toy.yaml").write_text(TOY_RUBRIC)
    settings = settings.model_copy(update={"rubric_dir": rubric_dir})  # the API checks names there
    judge = JudgeScorer(rubrics=[], rubric_dirs=[rubric_dir], backend=transformers_backend)  # type: ignore[arg-type]
    worker = Worker(settings, scorers=[LengthScorer(), judge], hooks=())
    api = LiveServer(settings).start()
    t = threading.Thread(target=worker.run, daemon=True)
    t.start()
    rng = random.Random(7)
    good = [{"id": f"g{i}", "prompt": "say", "completion": toy_text(rng, GOOD)} for i in range(4)]
    bad = [{"id": f"b{i}", "prompt": "say", "completion": toy_text(rng, BAD)} for i in range(4)]
    try:
        with JudgeClient(api.url, run="judged", rubrics=["toy"], spool_dir=settings.spool_dir) as c:
            c.submit(1, good + bad)
        with JudgeClient(api.url, run="unjudged", spool_dir=settings.spool_dir) as c:
            c.submit(1, good)
        store = Store(settings.database_url)
        wait_for(lambda: read.count_scored(store, "judged") == 8 and read.count_scored(store, "unjudged") == 4, timeout=120)

        def verdicts(run: str) -> dict[str, dict]:
            return {
                r["id"]: sc
                for r in read.step_samples(store, run, 1)
                for sc in r["scores"]
                if sc["scorer"] == "judge.toy.marker"
            }

        wait_for(lambda: len(verdicts("judged")) == 8, timeout=120)
        v = verdicts("judged")
        assert all(v[f"g{i}"]["value"] > 4.0 for i in range(4))
        assert all(v[f"b{i}"]["value"] < 2.0 for i in range(4))
        details = v["g0"]["details"]
        assert details["rubric_version"] and details["judge_model"] and details["prompt_hash"]
        assert read.get_run(store, "judged")["rubrics"] == ["toy"]  # type: ignore[index]
        assert verdicts("unjudged") == {}  # no rubric named, none by default: not judged
        store.close()
    finally:
        worker.stop()
        t.join(timeout=30)
        worker.close()
        api.stop()
