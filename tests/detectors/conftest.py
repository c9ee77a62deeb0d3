"""Fixtures of the detector tests: one MiniLM per session, loaded with the network cut."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest

from judgeserve.schema import Sample


def _no_network(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("MiniLM must load from the installed wheel without any network access")


@pytest.fixture(scope="session")
def minilm() -> Any:
    """The process's shared SentenceTransformer (embeddings.get_model), loaded offline."""
    from judgeserve.detectors._embeddings import get_model

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", _no_network)
        mp.setattr(socket, "create_connection", _no_network)
        return get_model()


@pytest.fixture
def make_sample() -> Callable[..., Sample]:
    """Build a Sample with defaults: ``make_sample("text", prompt="q", reference=...)``."""
    counter = iter(range(1_000_000))

    def make(completion: str, **fields: Any) -> Sample:
        data: dict[str, Any] = {
            "id": f"s{next(counter)}",
            "run": "detector-test",
            "step": 0,
            "prompt": "Tell me something.",
            "completion": completion,
        }
        data.update(fields)
        return Sample(**data)

    return make
