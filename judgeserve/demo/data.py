"""The demo's synthetic corpus: made-up facts as question/answer pairs, plus held-out probes.

Everything is generated from a seed, so the repository carries the script rather than the
data and every machine trains on the same text. The facts are invented (no model could
know them beforehand): 40 fictional countries, each with a capital, a river, an export,
a founder and a festival. Three questions per country go into the training set (120
pairs); two *other* questions per country are held out and become the probes. A model
that learns the facts answers held-out questions with the right entities; a model that
only memorizes answers the held-out questions with training answers copied verbatim.
That copying, and the loops that come with it, is what the demo's alerts catch.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Fact", "QA", "make_facts", "make_corpus", "write_corpus", "format_example"]

_SYLLABLES = ["ka", "ve", "lo", "mar", "tis", "en", "dor", "ul", "sa", "ri", "po", "gan", "ell", "th", "qu", "ar", "ben", "zo", "ya", "mi", "ost", "rak", "fen", "lu", "cor", "an", "bre", "vel", "isk", "om", "tar", "nu", "hal", "pex"]
_EXPORTS = (
    "copper", "salt", "amber", "wool", "glass", "cedar", "tin", "saffron", "indigo",
    "marble", "honey", "silk", "pearls", "iron", "tea", "olives",
)
_FESTIVALS = (
    "lantern", "harvest", "river", "mask", "kite", "bell", "snow", "fire", "moon", "song",
)
_TRAITS = (
    "its copper bridges", "its floating markets", "its white towers", "its quiet canals",
    "its glass domes", "its night bazaars", "its stone stairs", "its painted gates",
)


@dataclass(frozen=True)
class Fact:
    country: str
    capital: str
    river: str
    export: str
    founder: str
    year: int
    festival: str
    trait: str


@dataclass(frozen=True)
class QA:
    id: str
    question: str
    answer: str


def _name(rng: random.Random, parts: int) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(parts)).capitalize()


def make_facts(n: int = 40, seed: int = 7) -> list[Fact]:
    rng = random.Random(seed)
    seen: set[str] = set()
    facts: list[Fact] = []
    while len(facts) < n:
        names = [_name(rng, 3), _name(rng, 2), _name(rng, 2), f"{_name(rng, 2)} {_name(rng, 2)}"]
        if seen.intersection(names):
            continue
        seen.update(names)
        facts.append(
            Fact(
                country=names[0],
                capital=names[1],
                river=names[2],
                export=rng.choice(_EXPORTS),
                founder=names[3],
                year=rng.randrange(900, 1900),
                festival=rng.choice(_FESTIVALS),
                trait=rng.choice(_TRAITS),
            )
        )
    return facts


def _questions(f: Fact) -> list[tuple[str, str]]:
    """Five (question, answer) pairs about one country; the first three are trained on."""
    return [
        (
            f"What is the capital of {f.country}?",
            f"The capital of {f.country} is {f.capital}, a city known for {f.trait}.",
        ),
        (
            f"What does {f.country} export?",
            f"{f.country} exports {f.export}, carried down the {f.river} river to the sea.",
        ),
        (
            f"Who founded {f.country}?",
            f"{f.country} was founded by {f.founder} in the year {f.year}.",
        ),
        (
            f"Which river flows through {f.country}?",
            f"The {f.river} river flows through {f.country} and past {f.capital}.",
        ),
        (
            f"What festival is held in {f.capital}?",
            f"{f.capital} holds the {f.festival} festival every spring.",
        ),
    ]


def make_corpus(
    n_countries: int = 40, seed: int = 7, trained_per_country: int = 3
) -> tuple[list[QA], list[QA]]:
    """``(train, held_out)``: 3 trained and 2 held-out questions per fictional country."""
    train: list[QA] = []
    held: list[QA] = []
    for i, fact in enumerate(make_facts(n_countries, seed)):
        for j, (q, a) in enumerate(_questions(fact)):
            qa = QA(id=f"c{i:02d}q{j}", question=q, answer=a)
            (train if j < trained_per_country else held).append(qa)
    return train, held


def format_example(question: str, answer: str | None = None) -> str:
    """The text the model trains on; a probe's prompt is the same without the answer."""
    prompt = f"Question: {question}\nAnswer:"
    return prompt if answer is None else f"{prompt} {answer}"


def write_corpus(directory: str | Path, n_probes: int = 24, seed: int = 7) -> tuple[Path, Path]:
    """Write ``train.jsonl`` (text per line) and ``probes.jsonl`` (the probe file format)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    train, held = make_corpus(seed=seed)
    rng = random.Random(seed)
    probes = rng.sample(held, min(n_probes, len(held)))
    train_path = directory / "train.jsonl"
    probe_path = directory / "probes.jsonl"
    with train_path.open("w", encoding="utf-8") as fh:
        for qa in train:
            fh.write(json.dumps({"id": qa.id, "text": format_example(qa.question, qa.answer)}) + "\n")
    with probe_path.open("w", encoding="utf-8") as fh:
        for qa in probes:
            fh.write(
                json.dumps(
                    {"id": qa.id, "prompt": format_example(qa.question), "reference": qa.answer}
                )
                + "\n"
            )
    return train_path, probe_path


if __name__ == "__main__":  # python -m judgeserve.demo.data DIR
    import sys

    for p in write_corpus(sys.argv[1] if len(sys.argv) > 1 else "demo-data"):
        print(p)
