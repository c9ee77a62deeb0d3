"""Client of the judge hosted on Ray Serve (``judgeserve serve``), over HTTP.

The worker does not run inside Ray, so it talks HTTP to the Serve proxy; the deployment
fans each request's prompts out into its ``@serve.batch`` queue, where they are batched
together with every other client's prompts (or, for vLLM, hands them straight to the
async engine, which batches every client's requests continuously).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from ...exceptions import ConfigError, ScorerError
from ..prompt import JudgePrompt
from .base import TokenUsage

__all__ = ["ServeBackend"]


class ServeBackend:
    """Talks to :class:`judgeserve.judge.serve.JudgeDeployment` at ``url`` (its route prefix)."""

    name = "serve"

    def __init__(
        self, model: str | None = None, *, url: str | None = None, timeout: float = 120.0
    ) -> None:
        if not url:
            raise ConfigError(
                "the serve judge backend needs url (the Serve route, e.g. http://127.0.0.1:8001/judge)"
            )
        self.url = url.rstrip("/")
        self._client = httpx.Client(timeout=timeout)
        self._expected_model = model
        self._info: dict[str, Any] | None = None

    @property
    def model(self) -> str:
        """The model the deployment serves (asked once), e.g. for score details."""
        if self._info is None:
            self._info = self.info()
            served = self._info.get("model")
            if self._expected_model and served and self._expected_model != served:
                raise ConfigError(
                    f"rubric wants judge model {self._expected_model!r} but {self.url} serves {served!r}"
                )
        return str(self._info.get("model"))

    @property
    def reports_usage(self) -> bool:
        """Whether the deployment's backend counts tokens (it then returns them per prompt)."""
        if self._info is None:
            self._info = self.info()
        return bool(self._info.get("reports_usage", False))

    def info(self) -> dict[str, Any]:
        data: dict[str, Any] = self._call("GET", "info").json()
        return data

    def _post(
        self, op: str, body: dict[str, Any], usage: Sequence[TokenUsage] | None = None
    ) -> list[Any]:
        data = self._call("POST", op, body).json()
        results: list[Any] = data["results"]
        if usage is not None:
            for u, counted in zip(usage, data.get("usage") or [], strict=False):
                u.prompt_tokens += int(counted.get("prompt_tokens", 0))
                u.generated_tokens += int(counted.get("generated_tokens", 0))
        return results

    def _call(self, method: str, op: str, body: dict[str, Any] | None = None) -> httpx.Response:
        # httpx's own messages ("[Errno 111] Connection refused") do not say where: the
        # worker's log and the dead letters must name the judge that could not be reached.
        try:
            response = self._client.request(method, f"{self.url}/{op}", json=body)
        except httpx.HTTPError as e:
            raise ScorerError(
                f"judge at {self.url} unreachable ({type(e).__name__}: {e}); is `judgeserve "
                "serve` running there (JUDGESERVE_JUDGE_URL, or the rubric's judge.url)?"
            ) from e
        if response.is_error:
            raise ScorerError(
                f"judge at {self.url} answered HTTP {response.status_code} to {op}: "
                f"{response.text[:500]}"
            )
        return response

    def label_probs(
        self, prompts: Sequence[JudgePrompt], usage: Sequence[TokenUsage] | None = None
    ) -> list[dict[str, float] | None]:
        return self._post("label_probs", {"prompts": [p.to_dict() for p in prompts]}, usage)

    def generate(
        self,
        prompts: Sequence[JudgePrompt],
        max_tokens: int = 8,
        usage: Sequence[TokenUsage] | None = None,
    ) -> list[str]:
        return self._post(
            "generate",
            {"prompts": [p.to_dict() for p in prompts], "max_tokens": max_tokens},
            usage,
        )

    def close(self) -> None:
        self._client.close()
