"""Fixtures of the callback tests: a tiny real model, its probes, and a live stack."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from judgeserve.alerts import AlertEngine, parse_rules
from judgeserve.demo.data import format_example, make_corpus
from judgeserve.detectors.length import LengthScorer
from judgeserve.generation_worker import GenerationWorker
from judgeserve.settings import Settings
from judgeserve.worker import Worker

from ..conftest import LiveServer

pytest.importorskip("transformers")


@dataclass
class Tiny:
    model_dir: Path
    tokenizer: Any
    texts: list[str]
    probes: Path  # JSONL

    def model(self) -> Any:
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(self.model_dir)

    def dataset(self) -> Any:
        from judgeserve.demo.model import TextDataset

        return TextDataset(self.texts, self.tokenizer)

    def collate(self, batch: Any) -> Any:
        from judgeserve.demo.model import collate

        return collate(batch, self.tokenizer.pad_token_id)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread: on 2 shared cores, two threads spin against each other (7x slower)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    """A 2-layer GPT-2 and a BPE tokenizer trained here, saved, loaded through the real loaders."""
    from judgeserve.demo.model import tiny_gpt2, train_tokenizer

    root = tmp_path_factory.mktemp("tiny")
    train, held = make_corpus(n_countries=12)
    texts = [format_example(q.question, q.answer) for q in train]
    tokenizer = train_tokenizer(texts + [format_example(q.question, q.answer) for q in held], root / "tok", vocab_size=400)
    tiny_gpt2(tokenizer, layers=2).save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    probes = root / "probes.jsonl"
    lines = [{"id": q.id, "prompt": format_example(q.question), "reference": q.answer} for q in held[:5]]
    lines.append({"id": "train-0", "training_prefix": format_example(train[0].question)})
    probes.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return Tiny(root / "model", tokenizer, texts, probes)


class Stack:
    """A real API server and one worker thread with chosen scorers and alert rules."""

    def __init__(self, settings: Settings, worker: Worker) -> None:
        self.settings = settings
        self.worker = worker
        self.server = LiveServer(settings).start()
        self.url = self.server.url
        self.thread = threading.Thread(target=worker.run, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.worker.stop()
        self.thread.join(timeout=10)
        self.server.stop()


@pytest.fixture
def stack(settings: Settings, make_worker: Callable[..., Worker]) -> Iterator[Callable[[str], Stack]]:
    made: list[Stack] = []

    def start(rules_yaml: str = "rules: []") -> Stack:
        engine = AlertEngine(parse_rules(rules_yaml))
        s = Stack(settings, make_worker(scorers=[LengthScorer()], hooks=[engine]))
        made.append(s)
        return s

    yield start
    for s in made:
        s.close()


class Generating:
    """A generation worker thread with the transformers generator hosting the tiny base."""

    def __init__(self, settings: Settings, base: Path) -> None:
        from judgeserve.generator.transformers import TransformersGenerator

        self.generator = TransformersGenerator(str(base), max_adapters=2)
        self.worker = GenerationWorker(settings, generator=self.generator)
        self.thread = threading.Thread(target=self.worker.run, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.worker.stop()
        self.thread.join(timeout=60)
        self.worker.close()
        self.generator.close()


@pytest.fixture
def generating(settings: Settings, tiny: Tiny) -> Iterator[Callable[[], Generating]]:
    made: list[Generating] = []

    def start() -> Generating:
        g = Generating(settings, tiny.model_dir)
        made.append(g)
        return g

    yield start
    for g in made:
        g.close()
