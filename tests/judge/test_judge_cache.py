"""The verdict cache: an identical (judge version, prompt) is judged once, within a call,
across workers through Redis, bounded; and what each verdict cost, counted."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import redis

from judgeserve.judge.backends.base import prompt_text
from judgeserve.judge.cache import MemoryVerdictCache, RedisVerdictCache, cache_key
from judgeserve.judge.prompt import PromptBuilder
from judgeserve.judge.rubric import Rubric, parse_rubric
from judgeserve.judge.verdicts import Item, Judge
from judgeserve.judge.version import JudgeVersion
from judgeserve.keys import Keys
from judgeserve.testing.toy_judge import BAD, GOOD, TOY_RUBRIC, expected_level, toy_text

from ..conftest import free_port


def collapsed(n: int = 64, distinct: int = 4, seed: int = 3) -> list[Item]:
    """A collapsed checkpoint: ``n`` answers to one probe, only ``distinct`` of them different."""
    rng = random.Random(seed)
    answers = [toy_text(rng, GOOD if k % 2 else BAD) for k in range(distinct)]
    return [Item(prompt="Say something.", completion=answers[i % distinct]) for i in range(n)]


@pytest.fixture
def redis_cache(redis_url: str) -> Any:
    prefix = f"c{random.getrandbits(32):08x}"
    client = redis.Redis.from_url(redis_url)
    cache = RedisVerdictCache(client, Keys(prefix), max_entries=1000)
    yield cache
    cache.clear()
    client.close()


def test_collapsed_checkpoint_costs_one_call_per_distinct_answer(
    transformers_backend: Any, rubric: Rubric
) -> None:
    items = collapsed(64, 4)
    judge = Judge(transformers_backend)  # no shared cache: duplicates are still asked once
    results = judge.score(rubric, items)
    stats = judge.take_stats()
    assert stats.prompts == 4 and stats.misses == 4 and stats.hits == 60
    assert len(stats.latencies) == 1  # the four went in one backend call
    for item, result in zip(items, results, strict=True):
        v = result["marker"]
        assert v.value == pytest.approx(expected_level(item.completion), abs=0.3)
    costs = [r["marker"].cost for r in results]
    assert sum(c.calls for c in costs) == 4 and sum(c.cache_hits for c in costs) == 60
    # Each duplicate carries the verdict of the first asked, at no cost.
    first = {item.completion: r["marker"] for item, r in zip(items[:4], results[:4], strict=True)}
    for item, r in zip(items[4:], results[4:], strict=True):
        assert r["marker"].value == first[item.completion].value
        assert r["marker"].cost.judge_s == 0 and r["marker"].cost.prompt_tokens == 0


def test_workers_share_verdicts_through_redis(
    transformers_backend: Any, rubric: Rubric, redis_cache: RedisVerdictCache
) -> None:
    items = collapsed(16, 4)
    one = Judge(transformers_backend, cache=redis_cache)
    before = one.score(rubric, items)
    assert one.take_stats().prompts == 4 and len(redis_cache) == 4
    # Another worker (its own Judge, its own renders with other fences) asks nothing.
    other = Judge(transformers_backend, PromptBuilder(), cache=redis_cache)
    after = other.score(rubric, items)
    stats = other.take_stats()
    assert stats.prompts == 0 and stats.hits == 16 and stats.latencies == []
    for b, a in zip(before, after, strict=True):
        assert a["marker"].value == b["marker"].value
        assert a["marker"].distribution == pytest.approx(b["marker"].distribution)
        assert a["marker"].cost.cache_hits == 1 and a["marker"].cost.calls == 0
    # New answers are asked; the known ones are not.
    rng = random.Random(99)
    fresh = [Item(prompt="Say something.", completion=toy_text(rng, GOOD)) for _ in range(3)]
    other.score(rubric, items[:4] + fresh)
    stats = other.take_stats()
    assert stats.prompts == 3 and stats.hits == 4


def test_another_judge_version_is_asked_again(
    transformers_backend: Any, rubric: Rubric, redis_cache: RedisVerdictCache
) -> None:
    items = collapsed(8, 2)
    Judge(transformers_backend, cache=redis_cache).score(rubric, items)
    reworded = parse_rubric(TOY_RUBRIC.replace("version:", "version: 2\n#", 1))
    assert reworded.version != rubric.version
    judge = Judge(transformers_backend, cache=redis_cache)
    judge.score(reworded, items)
    assert judge.take_stats().prompts == 2  # new rubric version, new prompt hash: a miss
    judge.score(rubric, items)
    assert judge.take_stats().prompts == 0  # the old version is still cached


def test_cache_key_ignores_the_fence_and_nothing_else(rubric: Rubric) -> None:
    fences = iter(["a" * 16, "b" * 16, "c" * 16])
    builder = PromptBuilder(fence_source=lambda: next(fences))
    one = builder.render(rubric, "marker", prompt="q", completion="banana split")
    two = builder.render(rubric, "marker", prompt="q", completion="banana split")
    three = builder.render(rubric, "marker", prompt="q", completion="banana splits")
    assert one.fence != two.fence and one.user != two.user
    v = JudgeVersion("toy", "transformers", one.prompt_hash, "1")
    assert cache_key(v, one) == cache_key(v, two)
    assert cache_key(v, one) != cache_key(v, three)
    for other in (
        JudgeVersion("toy-tuned", "transformers", one.prompt_hash, "1"),
        JudgeVersion("toy", "vllm", one.prompt_hash, "1"),
        JudgeVersion("toy", "transformers", "0" * 16, "1"),
        JudgeVersion("toy", "transformers", one.prompt_hash, "2"),
    ):
        assert cache_key(other, one) != cache_key(v, one)


def test_redis_cache_keeps_its_bound_dropping_the_least_recently_used(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    cache = RedisVerdictCache(client, Keys(f"b{random.getrandbits(32):08x}"), max_entries=3)
    try:
        assert cache.put_many({k: {"label": k} for k in ("a", "b", "c")}) == 0
        assert cache.get_many(["a"]) == {"a": {"label": "a"}}  # a is now the most recent
        assert cache.put_many({"d": {"label": "d"}, "e": {"label": "e"}}) == 2
        assert len(cache) == 3
        assert set(cache.get_many(["a", "b", "c", "d", "e"])) == {"a", "d", "e"}
        assert client.hlen(cache.hash_key) == 3  # the verdicts themselves went too
    finally:
        cache.clear()
        client.close()


def test_memory_cache_bound() -> None:
    cache = MemoryVerdictCache(max_entries=2)
    cache.put_many({"a": {}, "b": {}})
    cache.get_many(["a"])
    assert cache.put_many({"c": {}}) == 1
    assert set(cache.get_many(["a", "b", "c"])) == {"a", "c"}


def test_unreachable_cache_never_stops_the_judge(
    transformers_backend: Any, rubric: Rubric, caplog: pytest.LogCaptureFixture
) -> None:
    client = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    cache = RedisVerdictCache(client, Keys("gone"), max_entries=10)
    items = collapsed(6, 2)
    results = Judge(transformers_backend, cache=cache).score(rubric, items)
    for item, result in zip(items, results, strict=True):
        assert result["marker"].value == pytest.approx(expected_level(item.completion), abs=0.3)
    assert "verdict cache unreachable" in caplog.text
    client.close()


def test_tokens_counted_per_prompt(transformers_backend: Any, rubric: Rubric) -> None:
    items = collapsed(4, 4)
    judge = Judge(transformers_backend)
    prompts = [
        judge.builder.render(rubric, "marker", prompt=i.prompt, completion=i.completion)
        for i in items
    ]
    verdicts = judge.ask(prompts, rubric.min_label_mass)
    tok = transformers_backend.tokenizer
    for p, v in zip(prompts, verdicts, strict=True):
        text = prompt_text(p, tok)
        chat = bool(getattr(tok, "chat_template", None))
        want = len(tok(text, add_special_tokens=not chat)["input_ids"])
        assert v.cost.prompt_tokens == want
        assert v.cost.generated_tokens == 1  # one forward step: the verdict position
        assert v.cost.calls == 1 and v.cost.judge_s > 0
    stats = judge.take_stats()
    assert stats.prompt_tokens == sum(v.cost.prompt_tokens or 0 for v in verdicts)
    # The call's wall time is shared among its prompts, not counted once per prompt.
    assert sum(v.cost.judge_s for v in verdicts) == pytest.approx(stats.latencies[0])


def test_generated_fallback_counts_its_tokens(
    transformers_backend: Any,
) -> None:
    strict = parse_rubric(TOY_RUBRIC + "min_label_mass: 1.0\n")  # logprobs never suffice
    items = collapsed(2, 2)
    (result, _) = Judge(transformers_backend, fallback_max_tokens=4).score(strict, items)
    v = result["marker"]
    assert v.method in ("parsed", "unparseable")
    assert v.cost.calls == 1  # one prompt asked, in two requests: the tokens say so
    assert v.cost.generated_tokens is not None and 2 <= v.cost.generated_tokens <= 1 + 4


def test_pairwise_score_sums_both_orders(transformers_backend: Any, tmp_path: Path) -> None:
    from judgeserve.judge.scorer import JudgeScorer
    from judgeserve.schema import Sample
    from judgeserve.testing.toy_judge import TOY_PAIRWISE_RUBRIC

    name = parse_rubric(TOY_PAIRWISE_RUBRIC).name
    (tmp_path / f"{name}.yaml").write_text(TOY_PAIRWISE_RUBRIC)
    scorer = JudgeScorer(rubrics=[name], rubric_dirs=[tmp_path], backend=transformers_backend)
    rng = random.Random(5)
    good, bad = toy_text(rng, GOOD), toy_text(rng, BAD)
    samples = [
        Sample(id=f"s{i}", run="r", step=2, prompt="q", completion=good) for i in range(3)
    ]
    out = scorer.score_with(samples, baselines=[bad] * 3)
    details = [next(s.details for s in scores) for scores in out]
    # One pair asked (two orders): the other two samples are the same pair, from the first.
    assert [d["judge_calls"] for d in details] == [2, 0, 0]
    assert [d["cache_hits"] for d in details] == [0, 2, 2]
    orders = details[0]["orders"]
    assert details[0]["prompt_tokens"] == sum(o["prompt_tokens"] for o in orders)
    scorer.close()
