"""Judge cost through the worker: a collapsed checkpoint costs a judge call per distinct
answer, the next step saying the same things costs none (the shared verdict cache), and
the run page and GET /v1/runs/{run}/costs add it up per step and per run."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from judgeserve import read
from judgeserve.app import create_app
from judgeserve.judge.scorer import JudgeScorer
from judgeserve.schema import Sample, Score
from judgeserve.settings import Settings
from judgeserve.store import Store
from judgeserve.testing.toy_judge import BAD, GOOD, TOY_RUBRIC, toy_text
from judgeserve.worker import Worker

from ..test_metrics import dashboard_metrics, scrape, value

RUN = "costly"


def collapsed_step(step: int, answers: list[str], n: int = 64) -> list[dict[str, Any]]:
    return [
        {
            "run": RUN,
            "step": step,
            "id": f"s{step}-{i}",
            "prompt": "Say something.",
            "completion": answers[i % len(answers)],
            "rubrics": ["toy"],
        }
        for i in range(n)
    ]


def test_collapsed_checkpoints_cost_one_call_per_distinct_answer(
    settings: Settings,
    transformers_backend: Any,
    tmp_path: Path,
    make_worker: Callable[..., Worker],
) -> None:
    rubric_dir = tmp_path / "rubrics"
    rubric_dir.mkdir()
    (rubric_dir / "toy.yaml").write_text(TOY_RUBRIC)
    rng = random.Random(11)
    answers = [toy_text(rng, GOOD if k % 2 else BAD) for k in range(4)]
    judge = JudgeScorer(
        rubric_dirs=[rubric_dir], backend=transformers_backend, settings=settings
    )
    worker = make_worker(scorers=[judge], hooks=())
    worker.queue.add(collapsed_step(1, answers))
    worker.run(idle_exit_s=0.3)
    worker.queue.add(collapsed_step(2, answers))  # the collapse goes on: the same 4 answers
    worker.run(idle_exit_s=0.3)

    store = Store(settings.database_url)
    try:
        cost = read.judge_cost(store, RUN)
        by_step = {s["step"]: s for s in cost["steps"]}
        first, second = by_step[1], by_step[2]
        assert first["scores"] == 64 and first["judge_calls"] == 4 and first["cache_hits"] == 60
        assert second["judge_calls"] == 0 and second["cache_hits"] == 64
        assert second["judge_s"] == 0 and second["prompt_tokens"] == 0
        assert first["judge_s"] > 0 and first["generated_tokens"] == 4  # one verdict token each
        # The step's prompt tokens are the sum of what its scores recorded.
        details = [
            sc["details"]
            for sample in read.step_samples(store, RUN, 1, limit=100)
            for sc in sample["scores"]
        ]
        assert first["prompt_tokens"] == sum(d.get("prompt_tokens", 0) for d in details) > 0
        assert cost["total"]["judge_calls"] == 4 and cost["total"]["cache_hits"] == 124
        assert cost["total"]["cache_hit_rate"] == round(124 / 128, 4)
        assert cost["rubrics"]["toy"]["prompt_tokens"] == first["prompt_tokens"]

        # Recomputing a step (another worker, a late sample) never counts a score twice.
        worker.update_checkpoint(RUN, 1)
        assert read.judge_cost(store, RUN)["steps"][1] == first

        with TestClient(create_app(settings)) as api:
            body = api.get(f"/v1/runs/{RUN}/costs").json()
            assert body["total"] == cost["total"]
            assert [s["step"] for s in body["steps"]] == [2, 1]
            assert api.get(f"/v1/runs/{RUN}/costs", params={"limit": 1}).json()["steps"] == [
                body["steps"][0]
            ]
            assert api.get("/v1/runs/nobody/costs").status_code == 404
            page = api.get(f"/runs/{RUN}").text
            metrics = scrape(api)
        # What the worker's judge did reached /metrics (through Redis, as from any host).
        assert value(metrics, "judgeserve_judge_cache_hits_total") == 124
        assert value(metrics, "judgeserve_judge_cache_misses_total") == 4
        assert value(metrics, "judgeserve_judge_cache_hit_ratio") == pytest.approx(124 / 128)
        assert value(metrics, "judgeserve_judge_cache_entries") == 4
        assert value(metrics, "judgeserve_judge_prompts_total", backend="transformers") == 4
        calls = value(metrics, "judgeserve_judge_requests_total", backend="transformers")
        assert calls is not None and calls >= 1
        assert value(metrics, "judgeserve_judge_latency_seconds_count", backend="transformers") == (
            calls
        )
        inf = value(metrics, "judgeserve_judge_latency_seconds_bucket", backend="transformers",
                    le="+Inf")
        assert inf == calls
        took = value(metrics, "judgeserve_judge_latency_seconds_sum", backend="transformers")
        # The calls' wall time is what the verdicts' shares add up to.
        assert took == pytest.approx(cost["total"]["judge_s"], abs=1e-4) and took > 0
        counted = "judgeserve_judge_tokens_total"
        assert value(metrics, counted, backend="transformers", kind="prompt") == (
            cost["total"]["prompt_tokens"]
        )
        assert value(metrics, counted, backend="transformers", kind="generated") == 4
        assert value(metrics, "judgeserve_samples_scored_total", scorer="judge") == 128
        # Everything the Grafana dashboard draws is there once the service has worked.
        names = {name for name, _ in metrics}
        assert dashboard_metrics() <= names, sorted(dashboard_metrics() - names)
        assert "Judge cost" in page
        assert '<b class="judge-calls">4</b>' in page
        assert '<b class="cache-hits">124</b>' in page
        tokens = f'{cost["total"]["prompt_tokens"]:,}'
        assert f'<b class="prompt-tokens">{tokens}</b>' in page
    finally:
        store.close()


def test_run_without_judge_shows_no_cost(settings: Settings) -> None:
    store = Store(settings.database_url)
    with store.begin() as conn:
        store.upsert_run(conn, "plain", 3, None)
    with TestClient(create_app(settings, store=store)) as api:
        body = api.get("/v1/runs/plain/costs").json()
        assert body["total"]["scores"] == 0 and body["steps"] == []
        assert body["total"]["cache_hit_rate"] is None
        assert "Judge cost" not in api.get("/runs/plain").text
    store.close()


def test_costs_sum_per_step_and_rubric_on_either_database(database_url: str) -> None:
    """The sums are SQL over the scores' JSON details: the same on SQLite and PostgreSQL,
    a backend that counts no tokens stays unknown (None), never zero."""
    store = Store(database_url)
    counted = {"judge_s": 0.25, "judge_calls": 1, "cache_hits": 0, "prompt_tokens": 100,
               "generated_tokens": 1}
    hit = {"judge_s": 0.0, "judge_calls": 0, "cache_hits": 1, "prompt_tokens": 0,
           "generated_tokens": 0}
    uncounted = {"judge_s": 0.5, "judge_calls": 1, "cache_hits": 0}  # an API without usage
    rows = [
        ("s1", [Score(scorer="judge.toy.marker", value=5.0, details=counted),
                Score(scorer="judge.other.c", value=1.0, details=uncounted),
                Score(scorer="length.tokens", value=3.0, details={"judge_s": 99})]),
        ("s2", [Score(scorer="judge.toy.marker", value=5.0, details=hit),
                Score(scorer="judge.other.c", value=1.0, details=uncounted)]),
    ]
    try:
        with store.begin() as conn:
            store.upsert_run(conn, RUN, 7, None)
            store.save_samples(
                conn, [Sample(id=sid, run=RUN, step=7, prompt="p", completion="c")
                       for sid, _ in rows]
            )
            store.save_batch_scores(conn, [(RUN, 7, sid, scores) for sid, scores in rows])
            store.save_judge_costs(conn, RUN, 7)
        cost = read.judge_cost(store, RUN)
        toy, other = cost["rubrics"]["toy"], cost["rubrics"]["other"]
        assert (toy["scores"], toy["judge_calls"], toy["cache_hits"]) == (2, 1, 1)
        assert toy["judge_s"] == 0.25 and toy["prompt_tokens"] == 100
        assert toy["generated_tokens"] == 1 and toy["cache_hit_rate"] == 0.5
        assert other["judge_s"] == 1.0 and other["judge_calls"] == 2
        assert other["prompt_tokens"] is None and other["generated_tokens"] is None
        (step,) = cost["steps"]
        assert step["step"] == 7 and step["judge_s"] == 1.25  # the detector's is not judge time
        assert step["prompt_tokens"] == 100 and step["scores"] == 4
    finally:
        store.close()
