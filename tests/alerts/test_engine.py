"""The engine against a real store: recording, evidence, de-duplication, resolving, wiring."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from judgeserve import read
from judgeserve.aggregates import aggregate
from judgeserve.alerts import AlertEngine, WebhookNotifier, parse_rules
from judgeserve.app import create_app
from judgeserve.detectors.length import LengthScorer
from judgeserve.schema import Sample, Score
from judgeserve.scorers import Flag
from judgeserve.settings import Settings
from judgeserve.store import Store
from judgeserve.worker import Worker

from .conftest import Receiver

RULES = parse_rules(
    """
rules:
  - name: loops
    type: threshold
    metric: repetition.loop
    above: 0.2
  - name: mem
    type: divergence
    metric: memorization.ngram_overlap
    worse: higher
    min_change: 0.15
    severity: critical
    action: stop
  - name: collapse
    type: threshold
    metric: flag.diversity.collapse
    above: 0.5
"""
)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    s = Store(database_url)
    yield s
    s.close()


def checkpoint(store: Store, run: str, step: int, metric: str, values: list[float] | list[bool],
               loss: float | None = None) -> None:
    """What the worker leaves behind for one checkpoint: samples, scores, aggregates."""
    samples = [Sample(run=run, step=step, id=f"{step}-{i}", prompt="p", completion="c") for i in range(len(values))]
    with store.begin() as conn:
        store.upsert_run(conn, run, step)
        store.save_samples(conn, samples)
        for s, v in zip(samples, values, strict=True):
            store.save_scores(conn, run, step, s.id, [Score(scorer=metric, value=v)])
        store.save_aggregates(conn, run, step, {metric: aggregate(values)})
    if loss is not None:
        store.save_metrics(run, step, {"loss": loss})


def test_fires_once_while_open_and_again_after_resolve(store: Store) -> None:
    engine = AlertEngine(RULES)
    checkpoint(store, "r", 100, "repetition.loop", [0.0] * 8)
    assert engine.check(store, "r", 100) == []
    checkpoint(store, "r", 200, "repetition.loop", [1.0] * 4 + [0.0] * 4)
    (alert,) = engine.check(store, "r", 200)
    assert alert.id is not None and alert.rule == "loops" and alert.step == 200
    assert alert.evidence["type"] == "threshold" and alert.evidence["value"] == 0.5
    assert set(alert.evidence["sample_ids"][:4]) == {"200-0", "200-1", "200-2", "200-3"}
    # Still looping: no second alert while the first is open, at this or a later checkpoint.
    assert engine.check(store, "r", 200) == []
    checkpoint(store, "r", 300, "repetition.loop", [1.0] * 8)
    assert engine.check(store, "r", 300) == []
    assert store.resolve_alert(alert.id)
    assert engine.check(store, "r", 200) == []  # the checkpoint the resolved alert was about
    (again,) = engine.check(store, "r", 300)  # a later one may fire again
    assert again.step == 300 and again.id != alert.id
    assert [a.state for a in read.list_alerts(store, "r")] == ["open", "resolved"]
    assert engine.check(store, "other-run", 400) == []


def test_a_loops_alert_lists_the_looping_samples_only(store: Store) -> None:
    engine = AlertEngine(RULES)
    checkpoint(store, "r", 100, "repetition.loop", [False, True, False, False])
    (alert,) = engine.check(store, "r", 100)
    assert alert.rule == "loops" and alert.evidence["sample_ids"] == ["100-1"]


def test_divergence_from_stored_loss_and_scores(store: Store) -> None:
    engine = AlertEngine(RULES)
    checkpoint(store, "r", 100, "memorization.ngram_overlap", [0.0] * 12, loss=3.0)
    checkpoint(store, "r", 200, "memorization.ngram_overlap", [0.05] * 12, loss=1.0)
    assert engine.check(store, "r", 200) == []
    checkpoint(store, "r", 300, "memorization.ngram_overlap", [0.6] * 10 + [0.0] * 2, loss=0.4)
    (alert,) = engine.check(store, "r", 300)
    assert (alert.rule, alert.severity, alert.action) == ("mem", "critical", "stop")
    assert alert.evidence["loss"]["current"] == {"step": 300, "value": 0.4}
    assert alert.evidence["p_value"] < 0.05 and len(alert.evidence["sample_ids"]) == 5
    # Reads back through the API model with its evidence intact.
    (stored,) = read.list_alerts(store, "r", "open")
    assert stored.evidence == alert.evidence | {"baseline": alert.evidence["baseline"]}


def test_flags_become_zero_one_series(store: Store) -> None:
    engine = AlertEngine(RULES)
    checkpoint(store, "r", 100, "length.tokens", [3.0] * 8)
    checkpoint(store, "r", 200, "length.tokens", [3.0] * 8)
    with store.begin() as conn:
        store.save_flags(conn, "r", 200, [Flag(name="diversity.collapse", message="collapsed")])
    assert engine.check(store, "r", 100) == []
    (alert,) = engine.check(store, "r", 200)
    assert alert.rule == "collapse" and alert.evidence["value"] == 1.0


def test_webhook_gets_the_alert(store: Store, receiver: Receiver) -> None:
    hook = WebhookNotifier(receiver.url, backoff_s=0.01)
    engine = AlertEngine(RULES, [hook])
    checkpoint(store, "r", 1, "repetition.loop", [1.0] * 8)
    (alert,) = engine.check(store, "r", 1)
    assert hook.join(10)
    engine.close()
    assert receiver.bodies[0]["alert"]["id"] == alert.id


def test_worker_wires_the_engine_from_settings(
    settings: Settings, make_worker: Callable[..., Worker], receiver: Receiver
) -> None:
    rules = Path(__file__).parent / "rules" / "custom.yaml"
    s = settings.model_copy(update={"alert_rules": rules, "alert_webhook_url": receiver.url})
    worker = make_worker(settings=s, scorers=[LengthScorer()])
    (engine,) = worker.hooks
    assert isinstance(engine, AlertEngine) and [r.name for r in engine.rules.rules] == ["long_answers"]
    with TestClient(create_app(s)) as api:
        body = {"step": 5, "expected": 3,
                "samples": [{"id": f"x{i}", "prompt": "p", "completion": "a b c d e"} for i in range(3)]}
        assert api.post("/v1/runs/wired/samples", json=body).status_code == 202
        worker.process(worker.queue.read(10, block_ms=100))
        (alert,) = api.get("/v1/runs/wired/alerts", params={"state": "open"}).json()["alerts"]
        evaluation = api.get("/v1/runs/wired/steps/5").json()["evaluation"]
        assert evaluation["expected"] == 3 and evaluation["n"] == 3 and evaluation["evaluated"]
        assert alert["rule"] == "long_answers" and alert["action"] == "stop" and alert["step"] == 5
        assert api.post(f"/v1/alerts/{alert['id']}/resolve").status_code == 200
        assert api.get("/v1/runs/wired/alerts", params={"state": "open"}).json()["alerts"] == []
    assert engine.notifiers[1].join(10)  # type: ignore[attr-defined]
    assert receiver.bodies[0]["alert"]["rule"] == "long_answers"


def test_default_rules_unless_alerts_are_off(settings: Settings, make_worker: Callable[..., Worker]) -> None:
    (engine,) = make_worker(scorers=[]).hooks
    assert isinstance(engine, AlertEngine) and len(engine.rules.rules) >= 8
    assert make_worker(settings=settings.model_copy(update={"alerts": False}), scorers=[]).hooks == []
    assert make_worker(scorers=[], hooks=()).hooks == []
