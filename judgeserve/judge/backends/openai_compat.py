"""Judge behind any OpenAI-compatible HTTP endpoint: vLLM's server, llama.cpp, Ollama, APIs.

``endpoint="chat"`` (default) sends the system + user messages to ``/chat/completions``;
``endpoint="completions"`` sends the rendered text, ending in the answer prefix, to
``/completions`` (for base models and servers without a chat template). Both ask for one
token with ``top_logprobs`` alternatives; a server that returns none makes this backend
answer ``None`` for that prompt, and the judge falls back to generating and parsing.
Labels are matched by token *text*, since token ids are not exposed.

The API key comes from the environment (``JUDGESERVE_JUDGE_API_KEY``, through the one
settings object), so rubric files, which the web view shows, never need to hold it; an
``api_key`` option still wins when given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import httpx

from ...exceptions import ConfigError, ScorerError
from ...settings import get_settings
from ..prompt import JudgePrompt
from .base import TokenUsage, match_label

__all__ = ["OpenAIBackend"]


class OpenAIBackend:
    """OpenAI-style completions over httpx, requests sent concurrently."""

    name = "openai"
    reports_usage = True

    def __init__(
        self,
        model: str | None = None,
        *,
        url: str | None = None,
        api_key: str | None = None,
        endpoint: Literal["chat", "completions"] = "chat",
        top_logprobs: int = 20,
        concurrency: int = 8,
        timeout: float = 60.0,
    ) -> None:
        if not url or not model:
            raise ConfigError("the openai judge backend needs url (…/v1) and model")
        if endpoint not in ("chat", "completions"):
            raise ConfigError(f"endpoint must be 'chat' or 'completions', not {endpoint!r}")
        self.model = model
        self.endpoint = endpoint
        self.top_logprobs = top_logprobs
        if api_key is None and (key := get_settings().judge_api_key) is not None:
            api_key = key.get_secret_value()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="judge-openai")

    def _body(
        self, prompt: JudgePrompt, max_tokens: int, logprobs: bool
    ) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {"model": self.model, "max_tokens": max_tokens, "temperature": 0}
        if self.endpoint == "completions":
            body["prompt"] = prompt.text()
            if logprobs:
                body["logprobs"] = self.top_logprobs
            return "/completions", body
        # Chat servers add the assistant turn themselves; the instruction to reply with the
        # label only (in the template) makes the first token the verdict.
        body["messages"] = prompt.messages()
        if logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = self.top_logprobs
        return "/chat/completions", body

    def _post(
        self, prompt: JudgePrompt, max_tokens: int, logprobs: bool, usage: TokenUsage | None
    ) -> dict[str, Any]:
        path, body = self._body(prompt, max_tokens, logprobs)
        where = str(self._client.base_url).rstrip("/") + path
        try:
            response = self._client.post(path, json=body)
        except httpx.HTTPError as e:  # the message must say which server could not be reached
            raise ScorerError(f"judge at {where} unreachable ({type(e).__name__}: {e})") from e
        if response.is_error:
            raise ScorerError(
                f"judge at {where} answered HTTP {response.status_code}: {response.text[:500]}"
            )
        data = response.json()
        counted = data.get("usage") or {}  # the server's own count; absent on some servers
        if usage is not None:
            usage.prompt_tokens += int(counted.get("prompt_tokens") or 0)
            usage.generated_tokens += int(counted.get("completion_tokens") or 0)
        choice: dict[str, Any] = data["choices"][0]
        return choice

    def _top(self, choice: dict[str, Any]) -> dict[str, float] | None:
        """First generated token's alternatives as text → logprob, or None if not offered."""
        logprobs = choice.get("logprobs")
        if not logprobs:
            return None
        if self.endpoint == "completions":
            tops = logprobs.get("top_logprobs") or []
            return dict(tops[0]) if tops and tops[0] else None
        content = logprobs.get("content") or []
        if not content:
            return None
        alternatives = content[0].get("top_logprobs") or []
        return {alt["token"]: alt["logprob"] for alt in alternatives} or None

    def _label_probs_one(
        self, prompt: JudgePrompt, usage: TokenUsage | None = None
    ) -> dict[str, float] | None:
        top = self._top(self._post(prompt, 1, logprobs=True, usage=usage))
        if top is None:
            return None
        probs = dict.fromkeys(prompt.labels, 0.0)
        for token, logprob in top.items():
            label = match_label(token, prompt.labels)
            if label is not None:
                probs[label] += math.exp(logprob)
        return probs

    def label_probs(
        self, prompts: Sequence[JudgePrompt], usage: Sequence[TokenUsage] | None = None
    ) -> list[dict[str, float] | None]:
        counts = usage if usage is not None else [None] * len(prompts)
        return list(self._pool.map(self._label_probs_one, prompts, counts))

    def generate(
        self,
        prompts: Sequence[JudgePrompt],
        max_tokens: int = 8,
        usage: Sequence[TokenUsage] | None = None,
    ) -> list[str]:
        def one(prompt: JudgePrompt, counted: TokenUsage | None) -> str:
            choice = self._post(prompt, max_tokens, logprobs=False, usage=counted)
            text = (
                choice.get("text")
                if self.endpoint == "completions"
                else choice["message"]["content"]
            )
            return str(text or "")

        counts = usage if usage is not None else [None] * len(prompts)
        return list(self._pool.map(one, prompts, counts))

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        self._client.close()
