from __future__ import annotations

import random

import pytest
from sacrebleu.metrics.chrf import CHRF

from judgeserve.detectors._chrf import chrf, chrf_batch

PAIRS = [
    ("The cat sat on the mat.", "The cat is sitting on the mat."),
    ("completely different words here", "nothing in common at all"),
    ("", "reference only"),
    ("hypothesis only", ""),
    ("", ""),
    ("a", "a"),
    ("aaaaaaaaaa", "aaa"),
    ("Le café coûte 3 €, très cher!", "Le café coûte trois euros."),
    ("Привет, мир! Как дела?", "Привет мир, как твои дела?"),
    ("“Smart quotes” — and dashes…", '"Smart quotes" - and dashes...'),
    ("control\x01chars\x00here", "control chars here"),
    ("multi\n\nline\ttext   with spaces", "multilinetext withspaces"),
]


def test_matches_sacrebleu_on_varied_pairs() -> None:
    reference = CHRF()
    got = chrf_batch(PAIRS)
    for (hyp, ref), value in zip(PAIRS, got, strict=True):
        assert value == pytest.approx(reference.sentence_score(hyp, [ref]).score, abs=1e-9), (
            hyp,
            ref,
        )


def test_matches_sacrebleu_on_random_texts_and_many_characters() -> None:
    rng = random.Random(3)
    words = ["alpha", "beta", "gamma", "délta", "ε", "ζήτα", "θ", "x", "yy", "…"]
    pairs = [
        (
            " ".join(rng.choices(words, k=rng.randrange(30))),
            " ".join(rng.choices(words, k=rng.randrange(30))),
        )
        for _ in range(50)
    ]
    # More than 254 distinct characters (CJK): the per-pair alphabet cannot code them.
    han = "".join(chr(0x4E00 + i) for i in range(400))
    pairs.append((han, han[::2]))
    reference = CHRF()
    for (hyp, ref), value in zip(pairs, chrf_batch(pairs), strict=True):
        assert value == pytest.approx(reference.sentence_score(hyp, [ref]).score, abs=1e-9)


def test_closer_text_scores_higher() -> None:
    ref = "The meeting was moved to Thursday afternoon."
    assert chrf("The meeting moved to Thursday afternoon.", ref) > chrf("I like green apples.", ref)
    assert chrf(ref, ref) == pytest.approx(100.0)
