from __future__ import annotations

import pytest

from judgeserve import scorers
from judgeserve.exceptions import ConfigError
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


def test_extra_scorer_references_load_or_say_what_is_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    # A loaded reference stays registered: keep it out of the other tests' workers.
    monkeypatch.setattr(scorers, "_registry", dict(scorers._registry))
    found = registered(["tests.plugins:PoisonScorer"])
    assert found["poison"].__name__ == "PoisonScorer"
    with pytest.raises(ConfigError, match="must look like"):
        registered(["tests.plugins.PoisonScorer"])
    with pytest.raises(ConfigError, match=r"cannot import scorer module 'tests\.nowhere'"):
        registered(["tests.nowhere:X"])
    with pytest.raises(ConfigError, match="has no attribute 'Nope'"):
        registered(["tests.plugins:Nope"])
