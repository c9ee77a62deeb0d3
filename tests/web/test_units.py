"""The web view's pure helpers: spans, diffs, number formatting, sparklines, paging, charts."""

from __future__ import annotations

from typing import Any

from judgeserve.web.charts import chart_payload, family_of, sparkline
from judgeserve.web.spans import Segment, Span, css_family, segments, spans_of
from judgeserve.web.templating import Urls, fmt_num
from judgeserve.web.textdiff import MAX_TOKENS, word_diff


def test_spans_from_any_score_details_are_validated() -> None:
    scores: dict[str, dict[str, Any]] = {
        "repetition.loop": {"details": {"spans": [[2, 5], [4, 99], [3, 3], ["a", 1], [True, 2], 7]}},
        "memorization.longest_span": {"details": {"start": 0, "end": 3}},
        "length.tokens": {"details": {}},
        "weird": {"details": "not a dict"},
    }
    assert spans_of(scores, 10) == [
        Span(0, 3, "memorization.longest_span"),
        Span(2, 5, "repetition.loop"),
        Span(4, 10, "repetition.loop"),
    ]


def test_segments_cut_overlaps_and_keep_all_text() -> None:
    text = "abcdefghij"
    segs = segments(text, [Span(0, 3, "memorization.x"), Span(2, 5, "repetition.loop"),
                           Span(4, 6, "repetition.loop")])
    assert "".join(s.text for s in segs) == text
    assert segs == [
        Segment("ab", ("memorization.x",)),
        Segment("c", ("memorization.x", "repetition.loop")),
        Segment("def", ("repetition.loop",)),
        Segment("ghij", ()),
    ]
    assert segs[1].families == ("memorization", "repetition")
    assert segments("", []) == []
    assert css_family('"><x') == "---x"


def test_word_diff() -> None:
    d = word_diff("the cat sat on the mat", "the cat sat on a mat today")
    assert [(p.op, p.text) for p in d.parts] == [
        ("equal", "the cat sat on "), ("delete", "the mat"), ("insert", "a mat today")]
    assert 0 < d.ratio < 1 and not d.truncated
    assert word_diff("x " * (MAX_TOKENS + 1), "x").truncated


def test_fmt_num() -> None:
    assert [fmt_num(v) for v in (None, True, False, 3, 3.0, 0.12345, 1234.5, 0.0001234, float("nan"))] == [
        "—", "yes", "no", "3", "3", "0.123", "1,234", "0.000123", "nan"]


def test_urls_quote_every_part() -> None:
    u = Urls("/prefix/")
    assert u.sample("r", "a/b?c") == "/prefix/runs/r/samples/a%2Fb%3Fc"
    assert u.step("r", 5, probe="p 1", flagged=False, sort=None) == "/prefix/runs/r/steps/5?probe=p+1"
    assert u.step("r", 0, page=0) == "/prefix/runs/r/steps/0?page=0"


def test_sparkline_and_families() -> None:
    assert sparkline([]) == ""
    assert sparkline([1.0]) == "60.0,14.0"
    assert sparkline([0.0, 1.0], width=10, height=10) == "0.0,8.0 10.0,2.0"
    assert family_of("judge.helpfulness.clarity") == "judge.helpfulness"
    assert family_of("repetition.loop") == "repetition"
    assert family_of("loss") == "other"
    def point(step: int, mean: float, lo: float | None, hi: float | None) -> dict[str, Any]:
        return {"step": step, "mean": mean, "ci_low": lo, "ci_high": hi, "n": 3}

    payload = chart_payload(
        {"length.tokens": [point(1, 2.0, 1.0, 3.0)], "judge.h.c": [point(1, float("nan"), None, None)],
         "train.loss": [point(0, 1.5, None, None)]},
        [{"id": 1, "step": 1, "severity": "info", "rule": "r", "state": "open", "run": "x"}],
    )
    assert [f["name"] for f in payload["families"]] == ["judge.h", "length"]
    assert payload["families"][0]["metrics"][0] == {
        "name": "judge.h.c", "steps": [1], "mean": [None], "lo": [None], "hi": [None]}
    assert payload["train"] == [{"name": "train.loss", "steps": [0], "value": [1.5], "hidden": False}]
    assert payload["alerts"] == [{"id": 1, "step": 1, "severity": "info", "rule": "r", "state": "open"}]


def test_units_headline_and_overlay() -> None:
    from judgeserve.web.charts import headline_metrics, overlay_payload, unit_of

    assert unit_of("repetition.loop", [0.0, 0.2]) == "0-1"
    assert unit_of("length.tokens", [0.5]) == "tokens"
    assert unit_of("judge.h.c", [3.0]) == "rubric level"
    assert unit_of("diversity.vendi", [0.5]) == "effective answers"
    assert unit_of("custom.count", [3.0, 0.5]) == "value"
    assert headline_metrics(["train.loss", "length.tokens", "repetition.loop", "reference.semscore",
                             "diversity.distinct2", "memorization.memorized"]) == [
        "reference.semscore", "memorization.memorized", "repetition.loop", "diversity.distinct2"]
    assert headline_metrics(["reference.semscore", "judge.a.x", "judge.a.y"]) == ["judge.a.x", "judge.a.y"]

    def pts(*pairs: tuple[int, float]) -> list[dict[str, Any]]:
        return [{"step": s, "mean": m, "ci_low": None, "ci_high": None, "n": 1} for s, m in pairs]

    runs = {
        "a": {"train.num_input_tokens_seen": pts((0, 0.0), (100, 1000.0)),
              "reference.chrf": pts((50, 10.0), (100, 20.0), (150, 30.0)),
              "train.total_flos": pts((100, 1e12))},
        "b": {"reference.chrf": pts((100, 25.0))},
    }
    by_step = overlay_payload(runs)
    assert [m["name"] for m in by_step["metrics"]] == ["reference.chrf"]  # counters left out
    assert by_step["metrics"][0]["series"][0]["x"] == [50.0, 100.0, 150.0]
    tokens = overlay_payload(runs, "tokens")
    chrf = next(m for m in tokens["metrics"] if m["name"] == "reference.chrf")
    # Step 50 is half way to 1000 tokens; step 150 is past what was logged: left out.
    # Not a judge metric: one line per run, labelled with the run, version 0.
    assert chrf["series"][0] == {"run": "a", "label": "a", "version": 0,
                                 "x": [500.0, 1000.0], "mean": [10.0, 20.0]}
    assert chrf["series"][1] == {"run": "b", "label": "b", "version": 0,
                                 "x": [100.0], "mean": [25.0]}  # by step
    assert chrf["unit"] == "chrF (0-100)"
    assert tokens["notes"] == ["b logged no tokens seen (train.num_input_tokens_seen): drawn by step"]
