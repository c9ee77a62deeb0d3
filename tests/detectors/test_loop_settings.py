"""The loop detector's settings are boundaries: a loop that just meets them is reported.

The other repetition tests check that what is reported loops; these check the converse,
that every periodic span meeting ``min_repeats`` / ``min_tokens`` / ``max_distance`` is
reported, at the exact boundary (a unit repeated exactly ``min_repeats`` times) and by brute
force over random token sequences, and that the near-loop rule and its region search take
their thresholds inclusively.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from judgeserve.detectors._near_periodic import (
    Candidate,
    NearLoopRule,
    _covered,
    _densest,
    _periods,
    _slack,
    candidates,
    text_classes,
)
from judgeserve.detectors.repetition import RepetitionScorer, analyse

AD = "Buy now and save big today. "  # 7 tokens: Buy now and save big today .


@pytest.mark.parametrize("min_repeats", [2, 3, 4, 5])
def test_a_unit_repeated_exactly_min_repeats_times_is_a_loop(min_repeats: int) -> None:
    scorer = RepetitionScorer(min_repeats=min_repeats, near=None)
    text = "Hello there! " + AD * min_repeats + "Thanks for reading"
    loop = scorer.loop(text)
    assert loop is not None
    assert (loop.kind, loop.period, loop.repeats) == ("exact", 7, min_repeats)
    assert scorer.loop("Hello there! " + AD * (min_repeats - 1) + "Thanks for reading") is None


def test_the_default_setting_flags_three_repeats_and_not_two() -> None:
    scorer = RepetitionScorer()
    assert scorer.min_repeats == 3
    loop = scorer.loop(AD * 3)
    assert loop is not None and (loop.start, loop.end, loop.period) == (0, 21, 7)
    assert scorer.loop(AD * 2) is None


@pytest.mark.parametrize("min_tokens", [8, 9])
def test_a_loop_of_exactly_min_tokens_tokens_is_a_loop(min_tokens: int) -> None:
    # "save big today ." four tokens, twice: eight tokens.
    scorer = RepetitionScorer(min_repeats=2, min_tokens=min_tokens, near=None)
    loop = scorer.loop("save big today. save big today.")
    assert (loop is not None) == (min_tokens <= 8)


def test_a_loop_whose_period_is_exactly_max_distance_is_a_loop() -> None:
    unit = "alpha beta gamma delta epsilon "  # five tokens
    for max_distance, found in [(5, True), (4, False)]:
        scorer = RepetitionScorer(max_distance=max_distance, near=None)
        assert (scorer.loop(unit * 4) is not None) == found, max_distance


def _periodic_runs(ids: list[int], min_repeats: int, max_distance: int) -> set[tuple[int, int, int]]:
    """Every maximal span ``[s, e)`` with ``ids[i] == ids[i + p]`` throughout and
    ``e - s >= min_repeats * p``, as ``(p, s, e)``: what the settings call a loop."""
    found = set()
    n = len(ids)
    for p in range(1, min(max_distance, n - 1) + 1):
        i = 0
        while i + p < n:
            if ids[i] != ids[i + p]:
                i += 1
                continue
            s = i
            while i + p < n and ids[i] == ids[i + p]:
                i += 1
            if i + p - s >= min_repeats * p:
                found.add((p, s, i + p))
    return found


def _random_ids(rng: random.Random) -> list[int]:
    # Random noise around a unit repeated near the threshold, so boundaries come up often.
    noise = [rng.randrange(5) for _ in range(rng.randrange(0, 12))]
    unit = [rng.randrange(5) for _ in range(rng.randrange(1, 6))]
    loop = unit * rng.randrange(1, 5) + unit[: rng.randrange(len(unit))]
    cut = rng.randrange(len(noise) + 1)
    return noise[:cut] + loop + noise[cut:] + [rng.randrange(5) for _ in range(rng.randrange(4))]


def test_every_periodic_span_meeting_the_settings_is_offered_as_a_loop() -> None:
    rng = random.Random(18)
    for _ in range(400):
        ids = _random_ids(rng)
        min_repeats = rng.choice([2, 3, 4])
        max_distance = rng.choice([2, 3, 512])
        offered: list[tuple[int, int, int]] = []

        def veto(
            start: int, unit_end: int, end: int, seen: list[tuple[int, int, int]] = offered
        ) -> bool:
            seen.append((unit_end - start, start, end))
            return False

        r = analyse(np.array(ids, dtype=np.int64), orders=(2,), max_distance=max_distance,
                    min_repeats=min_repeats, loop_ok=veto)
        expected = _periodic_runs(ids, min_repeats, max_distance)
        assert set(offered) == expected, (ids, min_repeats, max_distance)
        assert r.loop_period == 0  # all vetoed
        # Without a veto the longest of them is reported, with its shortest period.
        r = analyse(np.array(ids, dtype=np.int64), orders=(2,), max_distance=max_distance,
                    min_repeats=min_repeats)
        if expected:
            longest = max(e - s for _, s, e in expected)
            period = min(p for p, s, e in expected if e - s == longest)
            assert (r.loop_end - r.loop_start, r.loop_period) == (longest, period)
            assert (r.loop_period, r.loop_start, r.loop_end) in expected
        else:
            assert (r.loop_period, r.loop_start, r.loop_end) == (0, 0, 0)


def test_every_word_loop_meeting_the_settings_is_reported_by_the_scorer() -> None:
    rng = random.Random(5)
    words = ["alpha", "beta", "gamma", "delta", "omega"]
    for _ in range(150):
        ids = _random_ids(rng)
        text = " ".join(words[i] for i in ids)
        min_repeats, min_tokens = rng.choice([2, 3]), rng.choice([4, 8])
        scorer = RepetitionScorer(min_repeats=min_repeats, min_tokens=min_tokens, near=None)
        qualifying = [(p, s, e) for p, s, e in _periodic_runs(ids, min_repeats, 512)
                      if e - s >= min_tokens]
        loop = scorer.loop(text)
        if not qualifying:
            assert loop is None, (text, min_repeats, min_tokens)
            continue
        assert loop is not None, (text, min_repeats, min_tokens)
        assert loop.end - loop.start == max(e - s for _, s, e in qualifying)


def _widest_trimmed(cov: list[int], density: float) -> set[tuple[int, int]]:
    """The widest regions whose covered share is at least ``density``, each with its
    uncovered ends trimmed: what :func:`_densest` may return."""
    regions = [(s, e) for s in range(len(cov)) for e in range(s + 1, len(cov) + 1)
               if sum(1 for c in cov[s:e] if c) >= density * (e - s) - 1e-9]
    if not regions:
        return {(0, 0)}
    width = max(e - s for s, e in regions)
    trimmed = set()
    for s, e in regions:
        if e - s == width:
            while s < e and not cov[s]:
                s += 1
            while e > s and not cov[e - 1]:
                e -= 1
            trimmed.add((s, e))
    return trimmed


def test_the_densest_region_is_the_widest_at_the_density() -> None:
    rng = random.Random(3)
    cases = [([2, 2, 2, 0, 3], 0.8), ([1, 0, 0, 0, 1], 0.4), ([0, 0], 0.5), ([], 0.8)]
    for _ in range(300):
        share = rng.random()
        cov = [int(rng.random() < share) * rng.randrange(1, 4) for _ in range(rng.randrange(30))]
        cases.append((cov, rng.choice([0.4, 0.5, 0.8, 1.0])))
    for cov, density in cases:
        s, e = _densest(np.array(cov, dtype=np.int64), density)
        assert (s, e) in _widest_trimmed(cov, density), (cov, density, s, e)


def test_a_token_is_covered_by_a_copy_within_the_tolerance() -> None:
    # prev[i]: the start of the previous equal 4-gram; copies at distance 9, 10 and 13.
    prev = np.array([-1] * 10 + [1, 1, -1, 0], dtype=np.int64)
    length = len(prev) + 3
    lo, hi = 10 - _slack(10), 10 + _slack(10)
    assert (lo, hi) == (8.0, 12.0)
    dist = _covered(prev, length, 4, lo, hi)
    # i=10 copies from 1 (distance 9) and i=11 from 1 (10): both within [8, 12]; covering
    # tokens 10..14; i=13 copies from 0 (13): out of tolerance.
    assert dist.tolist() == [0] * 10 + [9, 9, 9, 9, 10, 0, 0]
    assert _covered(prev, length, 4, 9.0, 9.0).tolist()[10:14] == [9, 9, 9, 9]
    assert not _covered(prev, length, 4, 10.5, 12.0)[10]


def _candidate(**kw: float) -> Candidate:
    base = {"period": 10, "start": 10, "end": 60, "coverage": 0.95, "covered": 60,
            "word_share": 0.5, "data_share": 0.0}
    base.update(kw)
    return Candidate(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "at", "below"),
    [
        ("coverage", 0.8, 0.79),
        ("word_share", 0.2, 0.19),
        ("covered", 60, 59),
    ],
)
def test_the_near_loop_rule_takes_its_thresholds_inclusively(
    field: str, at: float, below: float
) -> None:
    rule = NearLoopRule()
    # Six repeats (end - start = 5 periods): the "many repeats" branch.
    assert rule(_candidate(**{field: at}))
    assert not rule(_candidate(**{field: below}))


def test_the_near_loop_rule_repeat_branches_at_their_thresholds() -> None:
    rule = NearLoopRule()
    # repeats = 1 + (end - start) / period
    many = _candidate(end=60, coverage=0.8)  # 6 repeats, the lowest coverage
    assert many.repeats == 6.0 and rule(many)
    assert not rule(_candidate(end=59, coverage=0.8))  # 5.9 repeats, coverage too low for few
    few = _candidate(end=45, coverage=0.9)  # 4.5 repeats, nearly exact
    assert few.repeats == 4.5 and rule(few)
    assert not rule(_candidate(end=45, coverage=0.89))
    assert not rule(_candidate(end=44, coverage=0.9))
    assert rule(_candidate(data_share=0.02)) and not rule(_candidate(data_share=0.03))
    block = _candidate(period=100, start=100, end=220, covered=300, coverage=0.85)
    assert block.repeats == 2.2 and rule(block)
    assert not rule(_candidate(period=100, start=100, end=219, covered=300, coverage=0.85))
    assert not rule(_candidate(period=100, start=100, end=220, covered=299, coverage=0.85))
    assert not rule(_candidate(period=100, start=100, end=220, covered=300, coverage=0.84))


def test_a_candidate_loop_starts_one_period_before_its_first_covered_token() -> None:
    assert _candidate(start=10, period=10).loop_start == 0
    assert _candidate(start=4, period=10).loop_start == 0
    assert _candidate(start=25, period=10).loop_start == 15


WORDS8 = "alpha beta gamma delta epsilon zeta eta"  # with a number in front: a unit of 8


@pytest.mark.parametrize(
    ("numbers", "word_share", "data_share"),
    [
        (None, 1.0, 0.0),  # eight words, ten times
        (range(1, 11), 63 / 72, 0.0),  # numbered 1..10: a counter, not data
        ([5, 17, 3, 99, 42, 8, 61, 23, 70, 11], 63 / 72, 9 / 72),  # nine different steps
        ([1, 4, 7, 50, 20, 90, 33, 60, 2, 80], 63 / 72, 7 / 72),  # +3 twice: a counter
    ],
)
def test_a_near_periodic_region_counts_its_covered_words_and_data(
    numbers: list[int] | range | None, word_share: float, data_share: float
) -> None:
    if numbers is None:
        text = "alpha beta gamma delta epsilon zeta eta theta " * 10
    else:
        text = " ".join(f"{k} {WORDS8}" for k in numbers)
    # Every 4-gram from token 8 on recurs 8 tokens back, covering tokens 8..79.
    [c] = candidates(text_classes(text))
    assert (c.period, c.start, c.end, c.covered, c.coverage) == (8, 8, 80, 72, 1.0)
    assert c.word_share == pytest.approx(word_share)
    assert c.data_share == pytest.approx(data_share)


def test_the_tolerance_is_a_fifth_of_the_period_half_a_token_more_for_short_units() -> None:
    # min(0.2 p + 0.5, max(2, 0.2 p)): short units get half a token, up to two tokens.
    assert [_slack(p) for p in (1, 5, 10, 20, 50)] == pytest.approx([0.7, 1.5, 2.0, 4.0, 10.0])


def test_the_first_token_of_a_text_can_be_the_copy() -> None:
    prev = np.array([-1] * 10 + [0, -1], dtype=np.int64)  # 4-gram 10 repeats 4-gram 0
    dist = _covered(prev, len(prev) + 3, 4, 8.0, 12.0)
    assert dist.tolist() == [0] * 10 + [10] * 4 + [0]


@pytest.mark.parametrize(("starts", "max_distance", "kept"), [
    (15, 512, True), (14, 512, False), (15, 10, True), (15, 9, False),
])
def test_a_period_needs_min_starts_repeats_within_max_distance(
    starts: int, max_distance: int, kept: bool
) -> None:
    # 4-grams 10, 11, ... repeat the ones 10 back (the first from 4-gram 0): MIN_STARTS is 15.
    prev = np.full(40, -1, dtype=np.int64)
    for i in range(10, 10 + starts):
        prev[i] = i - 10
    assert _periods(prev, max_distance, 8).tolist() == ([10] if kept else [])


def test_a_near_loop_is_found_whatever_the_orders_measured() -> None:
    # The near-loop prefilter reads rep4; without it (orders 2 and 3) it must let text through.
    verse = (
        "I walked along the {} at night,\nThe stars were shining cold and bright,\n"
        "I thought of you and all we knew,\nAnd every road that led me through.\n\n"
    )
    text = "".join(verse.format(w) for w in ["river", "highway", "shoreline", "railway", "mountain", "valley"])
    for orders in [(2, 3, 4), (2, 3)]:
        loop = RepetitionScorer(orders=orders).loop(text)
        assert loop is not None and loop.kind == "near", orders
