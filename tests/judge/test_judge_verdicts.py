"""Score arithmetic and parsing: weighted levels, never-invented verdicts, order swap."""

from __future__ import annotations

import pytest

from judgeserve.judge.verdicts import Verdict, combine_orders, parse_verdict, weighted_score


def test_weighted_score_is_the_expectation_over_levels() -> None:
    verdict = weighted_score({"1": 0.1, "3": 0.3, "5": 0.4}, min_mass=0.5)
    assert verdict is not None
    assert verdict.mass == pytest.approx(0.8)
    assert verdict.distribution["5"] == pytest.approx(0.5)
    assert verdict.value == pytest.approx((1 * 0.1 + 3 * 0.3 + 5 * 0.4) / 0.8)
    assert verdict.label == "5" and verdict.method == "logprobs"


def test_low_mass_is_not_trusted() -> None:
    assert weighted_score({"1": 0.1, "5": 0.2}, min_mass=0.5) is None
    assert weighted_score({"1": 0.0, "5": 0.0}) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (" 4", "4"),
        ("Score: 5. Clear and correct.", "5"),
        ("**3**", "3"),
        ("2/5", "2"),
        (" B.", "B"),
        ("tie", "tie"),
        ("7", None),  # not on the scale: unparseable, not clamped
        ("I think it deserves", None),  # words first: no guessing further on
        ("", None),
    ],
)
def test_parse_verdict(text: str, expected: str | None) -> None:
    labels = ("1", "2", "3", "4", "5") if expected not in ("A", "B", "tie") else ("A", "B", "tie")
    assert parse_verdict(text, labels) == expected


def _v(label: str, dist: dict[str, float] | None = None) -> Verdict:
    return Verdict(label=label, value=None, method="logprobs", distribution=dist or {label: 1.0})


def test_consistent_pair_keeps_the_verdict() -> None:
    pair = combine_orders(_v("A"), _v("B"))  # candidate first wins, candidate second wins
    assert (pair.outcome, pair.value, pair.consistent, pair.p_win) == ("win", 1.0, True, 1.0)
    pair = combine_orders(_v("B"), _v("A"))
    assert (pair.outcome, pair.value, pair.consistent) == ("loss", 0.0, True)


def test_position_bias_becomes_a_counted_tie() -> None:
    pair = combine_orders(_v("A"), _v("A"))  # the judge just likes the first answer
    assert (pair.outcome, pair.value, pair.consistent) == ("tie", 0.5, False)


def test_unparseable_order_gives_no_verdict() -> None:
    bad = Verdict(label=None, value=None, method="unparseable", raw="hmm")
    pair = combine_orders(_v("A"), bad)
    assert pair.outcome is None and pair.value is None
