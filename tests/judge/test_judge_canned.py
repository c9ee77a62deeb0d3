"""The judge end to end without a model: the openai backend against a local canned server.

The server stands in for a remote judge API (a true edge): it answers each request with
the logprobs or reply set for the answers it finds in the prompt, in the order they
appear (pairwise prompts show two). No torch, so mutmut's forked runs can use these.
"""

from __future__ import annotations

import json
import math
import re
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from judgeserve.exceptions import ScorerError
from judgeserve.judge.backends.openai_compat import OpenAIBackend
from judgeserve.judge.cache import MemoryVerdictCache
from judgeserve.judge.prompt import JudgePrompt, PromptBuilder
from judgeserve.judge.rubric import Rubric, parse_rubric
from judgeserve.judge.scorer import JudgeScorer
from judgeserve.judge.verdicts import (
    Cost,
    Item,
    Judge,
    Verdict,
    combine_orders,
    hit_cost,
    parse_verdict,
)
from judgeserve.schema import Sample
from judgeserve.scorers import Context

from ..conftest import free_port

MARK = re.compile(r"zq\d+")
PROMPT_TOKENS, GEN_TOKENS = 40, 3  # what the server says each request cost


class _Canned(BaseHTTPRequestHandler):
    probs: ClassVar[dict[str, dict[str, float] | None]] = {}  # key -> token -> probability
    replies: ClassVar[dict[str, str]] = {}  # key -> generated text
    seen: ClassVar[list[tuple[str, bool, str]]] = []  # (key, wanted logprobs, user text)
    roles: ClassVar[list[list[str]]] = []
    max_tokens: ClassVar[list[int]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
        user = body["messages"][-1]["content"]
        key = ",".join(dict.fromkeys(MARK.findall(user)))
        wants = bool(body.get("logprobs"))
        type(self).seen.append((key, wants, user))
        type(self).roles.append([m["role"] for m in body["messages"]])
        type(self).max_tokens.append(body["max_tokens"])
        choice: dict[str, Any] = {"message": {"content": type(self).replies.get(key, "")}}
        probs = type(self).probs.get(key)
        if wants and probs is not None:
            tops = [{"token": t, "logprob": math.log(p)} for t, p in probs.items()]
            choice["logprobs"] = {"content": [{"token": "x", "top_logprobs": tops}]}
        generated = 1 if wants else GEN_TOKENS
        data = {
            "choices": [choice],
            "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": generated},
        }
        out = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def url() -> Iterator[str]:
    _Canned.probs, _Canned.replies, _Canned.seen = {}, {}, []
    _Canned.roles, _Canned.max_tokens = [], []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Canned)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def backend(url: str) -> Iterator[OpenAIBackend]:
    b = OpenAIBackend("judge-m", url=url)
    yield b
    b.close()


SINGLE = """\
name: canned
version: "3"
description: Answer well.
reference: optional
scale:
  levels: {1: bad, 2: poor, 3: fair, 4: good, 5: great}
criteria:
  - name: quality
    description: Is it good?
"""
PAIR = """\
name: canned_pair
version: "2"
description: Answer well.
mode: pairwise
reference: optional
criteria:
  - name: quality
    description: Which is better?
"""


def _rubric(text: str, **extra: Any) -> Rubric:
    for k, v in extra.items():
        text += f"{k}: {json.dumps(v)}\n"
    return parse_rubric(text)


def _sample(completion: str, sid: str = "s1", **kw: Any) -> Sample:
    return Sample(run="r", step=1, id=sid, prompt="question", completion=completion, **kw)


def _costless(details: dict[str, Any]) -> dict[str, Any]:
    assert 0 < details["judge_s"] < 1  # a share of a local round trip, not a second more
    return {k: v for k, v in details.items() if k != "judge_s"}


def test_single_score_is_the_expectation_over_token_probabilities(backend: OpenAIBackend) -> None:
    # " 5" and "5" both spell level 5; "hello" is off the scale, so the labels got 0.9.
    _Canned.probs["zq1"] = {" 5": 0.4, "5": 0.2, " 4": 0.2, "3": 0.1, "hello": 0.1}
    rubric = _rubric(SINGLE)
    scorer = JudgeScorer([rubric], backend=backend)
    [[score]] = scorer.score([_sample("zq1", reference="ref-y")])
    assert score.scorer == "judge.canned.quality" and score.version == "3"
    assert "PROMPT: question\nREFERENCE: ref-y" in _Canned.seen[0][2]
    assert _Canned.roles == [["system", "user"]]
    assert len(score.details["prompt_hash"]) == 16
    assert score.value == pytest.approx((5 * 0.6 + 4 * 0.2 + 3 * 0.1) / 0.9)
    assert _costless(score.details) == {
        "method": "logprobs",
        "label": "5",
        "distribution": {"1": 0.0, "2": 0.0, "3": 0.111111, "4": 0.222222, "5": 0.666667},
        "label_mass": 0.9,
        "judge_calls": 1,
        "cache_hits": 0,
        "prompt_tokens": PROMPT_TOKENS,
        "generated_tokens": 1,
        "rubric": "canned",
        "rubric_version": "3",
        "judge_backend": "openai",
        "judge_model": "judge-m",
        "prompt_hash": PromptBuilder().prompt_hash(rubric, "quality"),
    }
    assert [(k, w) for k, w, _ in _Canned.seen] == [("zq1", True)]
    judge = scorer._judges["fixed"]  # the scorer reported and reset what the judge did
    assert judge is not None and judge.take_stats().prompts == 0
    scorer.close()


def test_low_mass_or_no_logprobs_falls_back_to_a_parsed_reply(backend: OpenAIBackend) -> None:
    _Canned.probs.update({"zq2": {"hello": 0.9, " 5": 0.05}, "zq3": None, "zq4": None})
    _Canned.replies.update({"zq2": "Score: 4", "zq3": "5" + "x" * 600, "zq4": "I think 3"})
    judge = Judge(backend, fallback_max_tokens=5)
    prompts = [
        judge.builder.render(_rubric(SINGLE), "quality", prompt="q", completion=c)
        for c in ("zq2", "zq3", "zq4")
    ]
    v2, v3, v4 = judge.ask(prompts, min_mass=0.5)
    assert (v2.method, v2.label, v2.value, v2.raw) == ("parsed", "4", 4.0, "Score: 4")
    assert (v3.method, v3.label, v3.value) == ("parsed", "5", 5.0)
    assert (v4.method, v4.label, v4.value, v4.raw) == ("unparseable", None, None, "I think 3")
    assert _costless(v2.details()) == {
        "method": "parsed",
        "label": "4",
        "raw": "Score: 4",
        "judge_calls": 1,
        "cache_hits": 0,
        "prompt_tokens": 2 * PROMPT_TOKENS,  # asked twice: logprobs, then a reply
        "generated_tokens": 1 + GEN_TOKENS,
    }
    assert v3.details()["raw"] == "5" + "x" * 499  # users see at most 500 characters
    assert [(k, w) for k, w, _ in _Canned.seen].count(("zq2", False)) == 1
    assert {k for k, w, _ in _Canned.seen if not w} == {"zq2", "zq3", "zq4"}
    stats = judge.take_stats()
    assert (stats.backend, stats.prompts, len(stats.latencies)) == ("openai", 6, 2)
    assert (stats.prompt_tokens, stats.generated_tokens) == (6 * PROMPT_TOKENS, 3 + 3 * GEN_TOKENS)
    assert (stats.hits, stats.misses) == (0, 3)
    assert judge.take_stats().prompts == 0


def test_wall_time_is_shared_by_prompt_length(backend: OpenAIBackend) -> None:
    _Canned.probs.update({"zq1": {"1": 1.0}, "zq2": {"2": 1.0}})
    judge = Judge(backend)
    rubric = _rubric(SINGLE)
    short = judge.builder.render(rubric, "quality", prompt="q", completion="zq1")
    long = judge.builder.render(rubric, "quality", prompt="q" * 500, completion="zq2")
    a, b = judge.ask([short, long])
    size_a = len(short.system) + len(short.user)
    size_b = len(long.system) + len(long.user)
    assert a.cost.judge_s / b.cost.judge_s == pytest.approx(size_a / size_b)
    assert a.cost.judge_s + b.cost.judge_s == pytest.approx(judge.take_stats().latencies[0])


def test_duplicates_and_cache_hits_cost_nothing(url: str, backend: OpenAIBackend) -> None:
    _Canned.probs.update({"zq1": {"4": 0.75, "2": 0.25}, "zq2": {"1": 1.0}})
    cache = MemoryVerdictCache(max_entries=1)
    judge = Judge(backend, cache=cache)
    rubric = _rubric(SINGLE)

    def render(c: str) -> Any:
        return judge.builder.render(rubric, "quality", prompt="q", completion=c)

    # The same answer twice (fences differ): one request answers both.
    first, dup, other = judge.ask([render("zq1"), render("zq1"), render("zq2")], rubric_version="3")
    assert sorted(k for k, _, _ in _Canned.seen) == ["zq1", "zq2"]
    assert first.value == dup.value == pytest.approx(3.5) and other.value == pytest.approx(1.0)
    assert first.cost.calls == 1 and first.cost.cache_hits == 0
    assert dup.cost == Cost(prompt_tokens=0, generated_tokens=0, cache_hits=1)
    assert dup.details()["cache_hits"] == 1 and dup.details()["judge_calls"] == 0
    stats = judge.take_stats()
    assert (stats.hits, stats.misses, stats.evictions) == (1, 2, 1)  # room for one only

    # Asked again: zq2 is still held, zq1 was evicted and is asked again.
    _Canned.seen.clear()
    held, again = judge.ask([render("zq2"), render("zq1")], rubric_version="3")
    assert [k for k, _, _ in _Canned.seen] == ["zq1"]
    assert held.cost == Cost(prompt_tokens=0, generated_tokens=0, cache_hits=1)
    assert (held.label, held.value, held.method) == ("1", 1.0, "logprobs")
    assert held.distribution["1"] == pytest.approx(1.0) and held.mass == pytest.approx(1.0)
    assert again.cost.calls == 1
    stats = judge.take_stats()
    assert (stats.hits, stats.misses) == (1, 1)

    # A cached verdict keeps everything but the cost; a generated one keeps its raw text.
    _Canned.seen.clear()
    _Canned.probs["zq3"] = None
    _Canned.replies["zq3"] = "2"
    big = Judge(backend, cache=MemoryVerdictCache())
    [fresh] = big.ask([render("zq3")], rubric_version="3")
    [cached] = big.ask([render("zq3")], rubric_version="3")
    assert len(_Canned.seen) == 2  # logprobs, then the reply; nothing the second time
    assert (cached.label, cached.value, cached.method, cached.raw) == ("2", 2.0, "parsed", "2")
    assert cached.distribution == {} and cached.mass is None
    assert cached.details() == {
        **fresh.details(),
        "judge_s": 0.0,
        "judge_calls": 0,
        "cache_hits": 1,
        "prompt_tokens": 0,
        "generated_tokens": 0,
    }

    # Another model or rubric version is another judge: the cache must not answer for it.
    _Canned.seen.clear()
    other_model = OpenAIBackend("judge-n", url=url)
    try:
        Judge(other_model, cache=big.cache).ask([render("zq3")], rubric_version="3")
    finally:
        other_model.close()
    big.ask([render("zq3")], rubric_version="4")
    assert len(_Canned.seen) == 4


def test_hit_cost_tokens_unknown_where_the_backend_never_counts() -> None:
    assert hit_cost(True) == Cost(prompt_tokens=0, generated_tokens=0, cache_hits=1)
    assert hit_cost(False) == Cost(cache_hits=1)
    assert (Cost(1.0, None, 2, 1, 0) + Cost(0.5, None, None, 0, 1)) == Cost(1.5, None, 2, 1, 1)
    assert Cost(judge_s=0.1234567, calls=2).details() == {
        "judge_s": 0.123457,
        "judge_calls": 2,
        "cache_hits": 0,
    }


def _probs(a: float, b: float, tie: float) -> dict[str, float]:
    return {"A": a, "B": b, "tie": tie}


def test_pairwise_keeps_only_verdicts_that_survive_the_swap(backend: OpenAIBackend) -> None:
    # zq5 beats zq6 in both orders; zq7/zq8: the judge prefers whatever comes first.
    _Canned.probs.update(
        {
            "zq5,zq6": _probs(0.7, 0.2, 0.1),
            "zq6,zq5": _probs(0.3, 0.6, 0.1),
            "zq7,zq8": _probs(0.8, 0.1, 0.1),
            "zq8,zq7": _probs(0.8, 0.1, 0.1),
            "zq9,zq10": _probs(0.1, 0.8, 0.1),
            "zq10,zq9": _probs(0.8, 0.1, 0.1),
        }
    )
    rubric = _rubric(PAIR)
    scorer = JudgeScorer([rubric], backend=backend)
    contexts = [Context(baseline=b) for b in ("zq6", "zq8", "zq10")]
    samples = [_sample(c, sid=c, reference="ref-x") for c in ("zq5", "zq7", "zq9")]
    win, tie, loss = (s for [s] in scorer.score_in_context(samples, contexts))
    scorer.close()
    assert all("REFERENCE: ref-x" in user for _, _, user in _Canned.seen)
    assert len(_Canned.seen) == 6
    assert (win.scorer, win.value, win.version) == ("judge.canned_pair.quality", 1.0, "2")
    assert win.details["p_win"] == pytest.approx((0.7 + 0.05 + 0.6 + 0.05) / 2)
    first = {
        "method": "logprobs",
        "label": "A",
        "distribution": {"A": 0.7, "B": 0.2, "tie": 0.1},
        "label_mass": 1.0,
        "judge_calls": 1,
        "cache_hits": 0,
        "prompt_tokens": PROMPT_TOKENS,
        "generated_tokens": 1,
    }
    second = {**first, "label": "B", "distribution": {"A": 0.3, "B": 0.6, "tie": 0.1}}
    details = _costless({k: v for k, v in win.details.items() if k != "p_win"})
    assert details["orders"][0].pop("judge_s") < 1 and details["orders"][1].pop("judge_s") < 1
    assert details == {
        "judge_calls": 2,
        "cache_hits": 0,
        "prompt_tokens": 2 * PROMPT_TOKENS,
        "generated_tokens": 2,
        "outcome": "win",
        "consistent": True,
        "baseline": rubric.baseline,
        "orders": [first, second],
        "rubric": "canned_pair",
        "rubric_version": "2",
        "judge_backend": "openai",
        "judge_model": "judge-m",
        "prompt_hash": PromptBuilder().prompt_hash(rubric, "quality"),
    }
    assert (tie.value, tie.details["outcome"], tie.details["consistent"]) == (0.5, "tie", False)
    assert tie.details["p_win"] == pytest.approx((0.8 + 0.05 + 0.1 + 0.05) / 2)
    assert (loss.value, loss.details["outcome"], loss.details["consistent"]) == (0.0, "loss", True)
    assert loss.details["p_win"] == pytest.approx((0.1 + 0.05 + 0.1 + 0.05) / 2)


def test_p_win_counts_half_of_each_tie() -> None:
    def v(label: str, dist: dict[str, float]) -> Verdict:
        return Verdict(label=label, value=None, method="logprobs", distribution=dist)

    pair = combine_orders(v("tie", {"tie": 0.6, "A": 0.4}), v("tie", {"tie": 0.8, "B": 0.2}))
    assert (pair.outcome, pair.value, pair.consistent) == ("tie", 0.5, True)
    assert pair.p_win == pytest.approx((0.4 + 0.3 + 0.2 + 0.4) / 2)
    parsed = Verdict(label="A", value=None, method="parsed")
    assert combine_orders(parsed, v("B", {"B": 1.0})).p_win is None


def test_compare_needs_a_baseline(backend: OpenAIBackend) -> None:
    with pytest.raises(ValueError, match="item 1 has no baseline to compare against"):
        Judge(backend).compare(_rubric(PAIR), [Item("q", "a", None, "b"), Item("q", "a")])


def test_skip_reasons_users_see(tmp_path: Any) -> None:
    sample = _sample("zq1")
    none = JudgeScorer([], rubric_dirs=[tmp_path])
    assert none.skip_reason(sample, Context()) == (
        "judge not configured: no rubric for this run (name rubrics in the SDK, or "
        "set JUDGESERVE_JUDGE_RUBRICS)"
    )
    unknown = none.skip_reason(sample, Context(rubrics=["nope"]))
    assert unknown is not None and unknown.startswith("rubric 'nope' skipped: ")
    remote = _rubric(SINGLE.replace("canned", "remote"), judge={"backend": "openai"})
    scorer = JudgeScorer([remote], rubric_dirs=[tmp_path], judge_url="http://unused/judge")
    assert scorer.skip_reason(sample, Context()) == (
        "judge not configured: rubric 'remote' uses the 'openai' judge and no endpoint is set "
        "(JUDGESERVE_JUDGE_URL or the rubric's judge.url)"
    )
    assert scorer.score([sample]) == [[]]  # not judged, and no error
    rare = _rubric(SINGLE.replace("canned", "rare"), sample_rate=1e-9)
    needs_ref = _rubric(SINGLE.replace("optional", "required"))
    pair = _rubric(PAIR)
    ok = _rubric(SINGLE.replace("canned", "fine"))
    # The default 'serve' judge is configured by the URL setting alone.
    scorer = JudgeScorer(
        [rare, needs_ref, pair, ok], rubric_dirs=[tmp_path], judge_url="http://127.0.0.1:9/j"
    )
    names = ["rare", "canned", "canned_pair"]
    assert scorer.skip_reason(sample, Context(rubrics=names)) == "; ".join(
        [
            "not in rubric 'rare''s sampled share (0%)",
            "rubric 'canned' needs a reference and these samples have none",
            "rubric 'canned_pair' compares with the same probe's answer at the baseline "
            f"checkpoint ({pair.baseline}), and there is none",
        ]
    )
    assert scorer.skip_reason(sample, Context(rubrics=[*names, "fine"])) is None
    assert scorer.skip_reason(_sample("zq1", reference="r"), Context(rubrics=["canned"])) is None
    assert scorer.skip_reason(sample, Context(rubrics=["canned_pair"], baseline="b")) is None
    # Rubrics given by name are looked up; a sample's tag names its rubrics too.
    assert scorer.skip_reason(_sample("zq1", tags={"rubrics": "rare"}), Context()) == (
        "not in rubric 'rare''s sampled share (0%)"
    )
    by_name = JudgeScorer(["nope"], rubric_dirs=[tmp_path])
    reason = by_name.skip_reason(sample, Context())
    assert reason is not None and reason.startswith("rubric 'nope' skipped: ")


def test_worker_scorer_shares_its_cache_and_metrics_through_redis(backend: OpenAIBackend) -> None:
    import redis

    from judgeserve.judge.cache import RedisVerdictCache
    from judgeserve.keys import Keys
    from judgeserve.settings import Settings
    from judgeserve.telemetry import read_shared

    assert JudgeScorer([]).cache is None and JudgeScorer([]).telemetry is None  # a script's
    prefix = f"judgecanned-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    settings = Settings(redis_url="redis://127.0.0.1:6379/0", stream_prefix=prefix)
    off = JudgeScorer([], settings=settings.model_copy(update={"verdict_cache_size": 0}))
    assert off.cache is None and off.telemetry is not None
    off.close()
    _Canned.probs["zq1"] = {"2": 1.0}
    rubric = _rubric(SINGLE)
    one = settings.model_copy(update={"verdict_cache_size": 1})
    try:
        for _ in range(2):  # two workers: the second is answered by the shared cache
            scorer = JudgeScorer([rubric], backend=backend, settings=one)
            assert isinstance(scorer.cache, RedisVerdictCache)
            [[score]] = scorer.score([_sample("zq1")])
            assert score.value == 2.0
            scorer.close()
        assert len(_Canned.seen) == 1 and score.details["cache_hits"] == 1
        _Canned.probs.update({"zq3": {"3": 1.0}, "zq4": {"4": 1.0}})
        scorer = JudgeScorer([rubric], backend=backend, settings=one)
        scorer.score([_sample("zq3", sid="s3"), _sample("zq4", sid="s4")])
        scorer.close()
        counts = read_shared(client, Keys(prefix))
        openai = (("backend", "openai"),)
        assert counts[("judgeserve_judge_requests_total", openai)] == 2
        assert counts[("judgeserve_judge_prompts_total", openai)] == 3
        assert counts[("judgeserve_judge_latency_seconds_count", openai)] == 2
        assert counts[("judgeserve_judge_tokens_total", (*openai, ("kind", "prompt")))] == 120
        assert counts[("judgeserve_judge_tokens_total", (*openai, ("kind", "generated")))] == 3
        assert counts[("judgeserve_judge_cache_hits_total", ())] == 1
        assert counts[("judgeserve_judge_cache_misses_total", ())] == 3
        assert counts[("judgeserve_judge_cache_evictions_total", ())] == 2  # room for one
    finally:
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
        client.close()


def test_prompt_survives_the_trip_to_a_serve_replica() -> None:
    rendered = PromptBuilder().render(_rubric(SINGLE), "quality", prompt="q", completion="a")
    sent = json.loads(json.dumps(rendered.to_dict()))  # labels arrive as a JSON list
    assert sent["labels"] == ["1", "2", "3", "4", "5"]
    assert JudgePrompt.from_dict(sent) == rendered


def test_prompt_text_for_base_and_chat_models() -> None:
    rendered = PromptBuilder().render(_rubric(SINGLE), "quality", prompt="q", completion="a")
    assert rendered.text() == f"{rendered.system}\n\n{rendered.user}\n\nScore:"
    templated = rendered.text(lambda ms: "|".join(f"{m['role']}={m['content']}" for m in ms))
    assert templated == f"system={rendered.system}|user={rendered.user}Score:"


@pytest.mark.parametrize(("text", "label"), [("Verdict: B", "B"), ("Answer: tie", "tie")])
def test_a_reply_may_name_what_it_gives(text: str, label: str) -> None:
    assert parse_verdict(text, ("A", "B", "tie")) == label


def test_a_new_rubric_version_is_judged_again(backend: OpenAIBackend) -> None:
    _Canned.probs.update(
        {"zq1": {"3": 1.0}, "zq1,zq2": _probs(0.8, 0.1, 0.1), "zq2,zq1": _probs(0.1, 0.8, 0.1)}
    )
    judge = Judge(backend, cache=MemoryVerdictCache())
    single, pair = _rubric(SINGLE), _rubric(PAIR)
    for version in ("3", "3", "4"):
        judge.score(single.model_copy(update={"version": version}), [Item("q", "zq1")])
        judge.compare(pair.model_copy(update={"version": version}), [Item("q", "zq1", None, "zq2")])
    assert len(_Canned.seen) == 2 * 3  # v3 once (then cached), v4 again


def test_rubric_without_a_fixed_backend_builds_its_own(url: str, caplog: Any) -> None:
    _Canned.probs["zq1"] = {"4": 1.0}
    own = _rubric(SINGLE, judge={"backend": "openai", "model": "judge-o", "url": url})
    # A rubric whose judge has no endpoint is passed over; the next one still judges.
    unset = _rubric(SINGLE.replace("canned", "unset"), judge={"backend": "openai"})
    scorer = JudgeScorer([unset, own])
    [[score]] = scorer.score([_sample("zq1")])
    scorer.close()
    assert (score.value, score.details["judge_model"]) == (4.0, "judge-o")
    # The serve judge takes the URL setting; nothing listens there, and the error says where.
    where = f"http://127.0.0.1:{free_port()}/judge"
    serve = JudgeScorer([_rubric(SINGLE, judge={"backend": "serve"})], judge_url=where)
    with pytest.raises(ScorerError, match=re.escape(f"judge at {where} unreachable")):
        serve.score([_sample("zq1")])
    serve.close()
    caplog.clear()
    JudgeScorer(["nope"]).score([_sample("zq1")])
    assert any(r.getMessage().startswith("rubric 'nope' skipped: ") for r in caplog.records)


def test_samples_a_rubric_does_not_apply_to_are_not_judged(
    backend: OpenAIBackend, tmp_path: Path
) -> None:
    rare = _rubric(SINGLE.replace("canned", "rare"), sample_rate=1e-9)
    needs_ref = _rubric(SINGLE.replace("optional", "required"))
    scorer = JudgeScorer([rare, needs_ref, _rubric(PAIR)], backend=backend)
    assert (
        scorer.skip_reason(_sample("zq1"), Context(rubrics=["canned_pair"], baseline="b")) is None
    )
    # A fixed backend judges any rubric: no endpoint is needed.
    assert scorer.skip_reason(_sample("zq1", reference="r"), Context(rubrics=["canned"])) is None
    assert scorer.score([_sample("zq1")]) == [[]]
    assert _Canned.seen == []
    # A rubric that judges none of the samples does not stop the next one.
    _Canned.probs["zq1"] = {"2": 1.0}
    scorer = JudgeScorer([rare, _rubric(SINGLE)], backend=backend)
    [[score]] = scorer.score([_sample("zq1")])
    assert score.scorer == "judge.canned.quality"
    # The run's rubrics, as the worker passes them, win over the scorer's own.
    (tmp_path / "canned.yaml").write_text(SINGLE)
    [[score], []] = JudgeScorer([rare], backend=backend, rubric_dirs=[tmp_path]).score_with(
        [_sample("zq1"), _sample("zq1", sid="s2")], rubrics=[["canned"], None]
    )
    assert score.scorer == "judge.canned.quality"
    # As the worker hands them over, in context; a rubric of the run that is not found (its
    # skip reason says so) does not stop the ones after it.
    [[score]] = JudgeScorer([rare], backend=backend, rubric_dirs=[tmp_path]).score_in_context(
        [_sample("zq1")], [Context(rubrics=["nope", "canned"])]
    )
    assert score.scorer == "judge.canned.quality"
    # A sample rate picks about that share of the samples, the same ones each time.
    half = _rubric(SINGLE.replace("canned", "half"), sample_rate=0.5)
    picker = JudgeScorer([half], backend=backend)
    ids = [f"sample-{i}" for i in range(40)]
    picked = [i for i in ids if picker.skip_reason(_sample("zq1", sid=i), Context()) is None]
    assert 10 <= len(picked) <= 30
    assert picked == [i for i in ids if picker.skip_reason(_sample("x", sid=i), Context()) is None]
    with pytest.raises(ValueError, match=re.escape("pairwise rubrics need completion_b (the")):
        PromptBuilder().render(_rubric(PAIR), "quality", prompt="q", completion="a")


def test_fallback_reply_is_short_by_default(backend: OpenAIBackend) -> None:
    _Canned.probs["zq1"] = None
    _Canned.replies["zq1"] = "3"
    rendered = PromptBuilder().render(_rubric(SINGLE), "quality", prompt="q", completion="zq1")
    [verdict] = Judge(backend).ask([rendered])
    assert verdict.value == 3.0 and _Canned.max_tokens == [1, 8]
