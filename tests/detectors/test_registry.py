from __future__ import annotations

from judgeserve.scorers import SampleScorer, SetScorer, registered

FAMILIES = {
    "length": SampleScorer,
    "repetition": SampleScorer,
    "truncation": SampleScorer,
    "memorization": SampleScorer,
    "reference": SampleScorer,
    "diversity": SetScorer,
    "reference_lc": SetScorer,
}


def test_builtin_detectors_register_through_entry_points() -> None:
    found = registered()
    for name, kind in FAMILIES.items():
        assert name in found, f"{name} is not registered; run pip install -e ."
        scorer = found[name]()
        assert isinstance(scorer, kind) and scorer.name == name
