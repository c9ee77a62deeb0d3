"""The default rules do not cry wolf, and still catch real changes.

Runs of a model that never changes (each checkpoint a draw from one real model's scored
MT-Bench answers, ``tests/data/steady_scores.jsonl``; the loss falling throughout) go
through the engine's own evaluation; the store-backed engine is checked to find the
same. Fixed seeds: the figures are those of docs/alerts.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from judgeserve.aggregates import aggregate
from judgeserve.alerts import AlertEngine, default_rules
from judgeserve.schema import Aggregate, Sample, Score
from judgeserve.store import Store
from judgeserve.testing.steady_run import BOOLEAN, SHIFTS, SteadyModel, simulate, steady_history

DATA = Path(__file__).resolve().parents[1] / "data" / "steady_scores.jsonl"


@pytest.fixture(scope="module")
def model() -> SteadyModel:
    return SteadyModel.from_jsonl(DATA)


@pytest.mark.parametrize("n", [64, 24])
def test_an_unchanging_model_raises_no_alert_in_95_of_100_runs_of_50_checkpoints(
    model: SteadyModel, n: int
) -> None:
    tally = simulate(default_rules().rules, model, runs=100, checkpoints=50, n=n, seed=0)
    assert tally.quiet >= 95, dict(tally.fired)


@pytest.mark.parametrize("change", sorted(SHIFTS))
def test_the_default_rules_still_catch_a_real_change_at_once(model: SteadyModel, change: str) -> None:
    rule, shift = SHIFTS[change]
    tally = simulate(default_rules().rules, model, runs=20, checkpoints=30, n=64, seed=1,
                     shift=shift, shift_at=15)
    caught = tally.delays.get(rule, [])
    assert len(caught) >= 18 and max(caught) <= 1, (caught, dict(tally.fired))
    assert all(step > 1500 for alerts in tally.alerts for _, step in alerts)  # none before it


def test_the_engine_on_a_real_store_finds_what_the_simulation_finds(
    database_url: str, model: SteadyModel
) -> None:
    rules = default_rules()
    _, shift = SHIFTS["length_collapse"]
    history = steady_history(model, np.random.default_rng([7, 0]), checkpoints=16, n=24,
                             shift=shift, shift_at=8)
    (simulated,) = simulate(rules.rules, model, runs=1, checkpoints=16, n=24, seed=7,
                            shift=shift, shift_at=8).alerts
    assert ("length_collapse", 900) in simulated
    store = Store(database_url)
    engine = AlertEngine(rules)
    found = []
    try:
        for loss in history.series["train.loss"]:
            step = loss.step
            metrics = [m for m in history.series if not m.startswith(("train.", "diversity."))]
            ids = [f"{step}-{i}" for i in range(24)]
            with store.begin() as conn:
                store.upsert_run(conn, "steady", step)
                store.save_samples(conn, [Sample(run="steady", step=step, id=i, prompt="p", completion="c") for i in ids])
                per_sample: dict[str, list[Score]] = {i: [] for i in ids}
                aggs: dict[str, Aggregate] = {}
                for m in metrics:
                    values = [v for _, v in history.samples(step, m)]
                    for i, v in zip(ids, values, strict=True):
                        per_sample[i].append(Score(scorer=m, value=bool(v) if m in BOOLEAN else v))
                    aggs[m] = aggregate(values)
                (unique,) = [p for p in history.series["diversity.unique_ratio"] if p.step == step]
                aggs["diversity.unique_ratio"] = Aggregate(mean=unique.mean, ci_low=None, ci_high=None, n=24)
                store.save_batch_scores(conn, [("steady", step, i, per_sample[i]) for i in ids])
                store.save_aggregates(conn, "steady", step, aggs)
            store.save_metrics("steady", step, {"loss": loss.mean or 0.0})
            found += [(a.rule, a.step) for a in engine.check(store, "steady", step)]
    finally:
        store.close()
    assert found == simulated
