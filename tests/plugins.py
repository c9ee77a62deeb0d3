"""Scorers the tests plug in through the same settings a user's own scorers use."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from judgeserve.schema import Sample, Score
from judgeserve.scorers import SampleScorer


class SlowScorer(SampleScorer):
    """Holds each batch for JUDGESERVE_TEST_SLOW_S seconds: a window to kill the worker in."""

    name = "slow"

    def score(self, samples: Sequence[Sample]) -> list[list[Score]]:
        time.sleep(float(os.environ.get("JUDGESERVE_TEST_SLOW_S", "30")))
        return [[Score(scorer="slow.done", value=True)] for _ in samples]


class PoisonScorer(SampleScorer):
    """Fails on any sample whose completion contains 'POISON'."""

    name = "poison"

    def score(self, samples: Sequence[Sample]) -> list[list[Score]]:
        for s in samples:
            if "POISON" in s.completion:
                raise ValueError(f"cannot score {s.id}")
        return [[Score(scorer="poison.ok", value=True)] for _ in samples]
