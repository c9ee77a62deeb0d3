"""Hosting a judge backend on Ray Serve: dynamic batching, replicas, health checks.

``deploy/serve.yaml`` is in Ray Serve's own config format (``serve run`` / ``serve deploy``
and KubeRay's ``serveConfigV2`` read it unchanged); its ``import_path`` points at
:func:`build_app`. ``judgeserve serve`` deploys that file (with the generator application
beside this one) through :func:`judgeserve.serve_config.run`.

Batching: for backends that run one forward pass per call (transformers), each prompt
is one call to a ``@serve.batch`` method, so prompts from every client and request are
gathered into one padded forward pass. ``max_ongoing_requests`` must be at least the batch
size, or a replica never holds enough calls to fill a batch. vLLM batches by itself,
continuously: a replica hosting ``backend: vllm`` runs its async engine (``vllm_async``)
and passes every request straight through to it, concurrently, without Serve's batching.

HTTP routes under the application's route prefix (default ``/judge``): ``POST
/label_probs`` and ``POST /generate`` with ``{"prompts": [...]}``, answered with
``{"results": [...]}`` and, when the backend counts tokens (``GET /info`` says
``reports_usage``), ``"usage"``: the tokens of each prompt; ``GET /info``,
``GET /stats`` (recent batch sizes) and ``GET /health``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..exceptions import MissingExtraError
from .backends.base import AsyncJudgeBackend, TokenUsage, load_backend, reports_usage
from .prompt import JudgePrompt

__all__ = ["DeploymentArgs", "JudgeDeployment", "build_app", "bind"]

log = logging.getLogger(__name__)
# In a replica, requests arrive concurrently on an event loop: the synchronous vLLM engine
# would take them one batch at a time, its async engine takes them as they come.
SERVE_VARIANTS = {"vllm": "vllm_async"}

try:
    from ray import serve
except ImportError as e:  # pragma: no cover - depends on the install
    raise MissingExtraError("ray[serve]", "judge") from e


class DeploymentArgs(BaseModel):
    """``args:`` of the judge application in serve.yaml."""

    model_config = ConfigDict(extra="forbid")

    backend: str = Field(
        "transformers",
        description="Registered judge backend to host; 'vllm' runs as 'vllm_async' (requests "
        "pass straight through to the engine's continuous batching).",
    )
    model: str | None = Field(None, description="Model path or name for the backend.")
    options: dict[str, Any] = Field(default_factory=dict, description="Backend keyword options.")
    max_batch_size: int = Field(
        16, ge=1, description="Most prompts in one forward pass (@serve.batch backends)."
    )
    batch_wait_timeout_s: float = Field(
        0.01,
        ge=0,
        description="How long a partial batch waits for more prompts (@serve.batch backends).",
    )


@serve.deployment(
    max_ongoing_requests=64,
    ray_actor_options={"num_cpus": 1},
    health_check_period_s=10,
    health_check_timeout_s=30,
)
class JudgeDeployment:
    """One replica: a judge backend behind batched calls."""

    def __init__(self, args: dict[str, Any]) -> None:
        cfg = DeploymentArgs.model_validate(args)
        backend = SERVE_VARIANTS.get(cfg.backend, cfg.backend)
        self.backend = load_backend(backend, cfg.model, **cfg.options)
        # Checked once: a runtime Protocol check inspects every member, too slow per request.
        self._async = self.backend if isinstance(self.backend, AsyncJudgeBackend) else None
        self._counts = reports_usage(self.backend)
        # The decorator's sizes are defaults; serve.yaml's args set the real ones.
        batched: list[Any] = [self._label_probs, self._generate]
        for method in batched:
            method.set_max_batch_size(cfg.max_batch_size)
            method.set_batch_wait_timeout_s(cfg.batch_wait_timeout_s)
        self.batch_sizes: collections.deque[int] = collections.deque(maxlen=1000)
        self.healthy = True

    def _usage(self, n: int) -> list[TokenUsage] | None:
        return [TokenUsage() for _ in range(n)] if self._counts else None

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def _label_probs(
        self, prompts: list[JudgePrompt]
    ) -> list[tuple[dict[str, float] | None, TokenUsage | None]]:
        self.batch_sizes.append(len(prompts))
        usage = self._usage(len(prompts))
        # The forward pass blocks; a thread keeps the replica's event loop taking requests
        # (and filling the next batch) meanwhile. Batches still run one at a time.
        if usage is None:
            probs = await asyncio.to_thread(self.backend.label_probs, prompts)
            return [(p, None) for p in probs]
        probs = await asyncio.to_thread(self.backend.label_probs, prompts, usage=usage)  # type: ignore[call-arg]
        return list(zip(probs, usage, strict=True))

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def _generate(
        self, requests: list[tuple[JudgePrompt, int]]
    ) -> list[tuple[str, TokenUsage | None]]:
        self.batch_sizes.append(len(requests))
        max_tokens = max(n for _, n in requests)
        prompts = [p for p, _ in requests]
        usage = self._usage(len(prompts))
        if usage is None:
            texts = await asyncio.to_thread(self.backend.generate, prompts, max_tokens)
            return [(t, None) for t in texts]
        texts = await asyncio.to_thread(self.backend.generate, prompts, max_tokens, usage=usage)  # type: ignore[call-arg]
        return list(zip(texts, usage, strict=True))

    async def label_probs(
        self, prompts: list[dict[str, Any]]
    ) -> tuple[list[dict[str, float] | None], list[TokenUsage] | None]:
        """Label probabilities for prompts given as :meth:`JudgePrompt.to_dict` dicts, and
        what each cost (None when the backend does not count)."""
        judged = [JudgePrompt.from_dict(p) for p in prompts]
        if self._async is not None:
            usage = self._usage(len(judged))
            if usage is None:
                return await self._async.alabel_probs(judged), None
            probs = await self._async.alabel_probs(judged, usage=usage)  # type: ignore[call-arg]
            return probs, usage
        pairs = await asyncio.gather(*(self._label_probs(p) for p in judged))
        return _unzip(pairs)

    async def generate(
        self, prompts: list[dict[str, Any]], max_tokens: int = 8
    ) -> tuple[list[str], list[TokenUsage] | None]:
        judged = [JudgePrompt.from_dict(p) for p in prompts]
        if self._async is not None:
            usage = self._usage(len(judged))
            if usage is None:
                return await self._async.agenerate(judged, max_tokens), None
            texts = await self._async.agenerate(judged, max_tokens, usage=usage)  # type: ignore[call-arg]
            return texts, usage
        pairs = await asyncio.gather(*(self._generate((p, max_tokens)) for p in judged))
        return _unzip(pairs)

    def info(self) -> dict[str, Any]:
        return {
            "backend": self.backend.name,
            "model": self.backend.model,
            "reports_usage": self._counts,
        }

    def stats(self) -> dict[str, Any]:
        """Recent Serve batch sizes; for pass-through engines, the most requests in flight."""
        out: dict[str, Any] = {**self.info(), "passthrough": self._async is not None}
        out["batch_sizes"] = list(self.batch_sizes)
        if self._async is not None:
            out["in_flight_peak"] = getattr(self._async, "in_flight_peak", None)
        return out

    def check_health(self) -> None:
        # Called by Serve every health_check_period_s; raising restarts the replica.
        if not self.healthy or getattr(self.backend, "model", None) is None:
            raise RuntimeError("judge backend is not loaded")

    async def __call__(self, request: Any) -> Any:
        route = request.url.path.rstrip("/").rsplit("/", 1)[-1]
        if request.method == "GET":
            if route == "info":
                return self.info()
            if route == "stats":
                return self.stats()
            if route == "health":
                self.check_health()
                return {"status": "ok"}
        elif request.method == "POST":
            body = await request.json()
            if route == "label_probs":
                return _answer(*await self.label_probs(body["prompts"]))
            if route == "generate":
                return _answer(
                    *await self.generate(body["prompts"], int(body.get("max_tokens", 8)))
                )
        from starlette.responses import JSONResponse

        return JSONResponse({"detail": f"no route {request.method} {route}"}, status_code=404)

    def __del__(self) -> None:
        backend = getattr(self, "backend", None)
        if backend is not None:
            backend.close()


def _unzip(pairs: Any) -> tuple[list[Any], list[TokenUsage] | None]:
    results = [r for r, _ in pairs]
    usage = [u for _, u in pairs]
    return results, (None if any(u is None for u in usage) else usage)


def _answer(results: list[Any], usage: list[TokenUsage] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"results": results}
    if usage is not None:
        out["usage"] = [u.to_dict() for u in usage]
    return out


def build_app(args: DeploymentArgs) -> Any:
    """Application builder named by ``import_path`` in serve.yaml.

    Ray validates ``args`` into :class:`DeploymentArgs` from the annotation (so a typo in
    serve.yaml fails at deploy time) and applies the file's ``deployments:`` overrides.
    """
    return bind(args)


def bind(
    args: DeploymentArgs | dict[str, Any], deployment_options: dict[str, Any] | None = None
) -> Any:
    """The judge application, with deployment options (replicas, CPUs...) overridden."""
    cfg = DeploymentArgs.model_validate(args)
    # @serve.deployment made the class a Deployment object; Ray's stubs do not say so.
    deployment: Any = JudgeDeployment
    if deployment_options:
        deployment = deployment.options(**deployment_options)
    return deployment.bind(cfg.model_dump())
