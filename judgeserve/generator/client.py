"""Client of the generator hosted on Ray Serve (``judgeserve serve``), over HTTP.

Used by the generation worker, which does not run inside Ray. A job's errors cross the
wire by name and come back as the same exceptions: a missing checkpoint is still a
:class:`~judgeserve.exceptions.CheckpointMissingError` on this side, so the worker can
dead-letter the job with its reason instead of retrying it.
"""

from __future__ import annotations

from typing import Any

import httpx

from ..exceptions import (
    CheckpointError,
    CheckpointMissingError,
    ConfigError,
    GeneratorError,
)
from .base import GenerationJob, GenerationResult

__all__ = ["ServeGenerator", "error_body", "raise_for_error"]


def error_body(exc: Exception) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) carrying ``exc`` to the client."""
    if isinstance(exc, CheckpointMissingError):
        return 404, {"error": "CheckpointMissingError", "message": str(exc), "path": exc.path}
    if isinstance(exc, CheckpointError):
        return 422, {"error": "CheckpointError", "message": str(exc)}
    if isinstance(exc, GeneratorError):
        return 503, {"error": "GeneratorError", "message": str(exc)}
    return 500, {"error": type(exc).__name__, "message": str(exc)}


def raise_for_error(response: httpx.Response) -> None:
    """Re-raise the generator's error carried by ``response`` (if it is one)."""
    if response.is_success:
        return
    try:
        body: dict[str, Any] = response.json()
    except ValueError:
        body = {}
    kind, message = body.get("error"), str(body.get("message") or response.text)
    if kind == "CheckpointMissingError":
        raise CheckpointMissingError(str(body.get("path")))
    if kind == "CheckpointError":
        raise CheckpointError(message)
    if kind == "invalid_job":
        raise ConfigError(f"the generator refused the job: {body.get('detail')}")
    raise GeneratorError(f"generator answered HTTP {response.status_code}: {message}")


class ServeGenerator:
    """Talks to :class:`judgeserve.generator.serve.GeneratorDeployment` at ``url`` (its
    route prefix, e.g. ``http://127.0.0.1:8001/generator``)."""

    name = "serve"

    def __init__(
        self, base_model: str | None = None, *, url: str | None = None, timeout: float = 600.0
    ) -> None:
        if not url:
            raise ConfigError(
                "the serve generator needs url (the Serve route, e.g. http://127.0.0.1:8001/generator)"
            )
        self.url = url.rstrip("/")
        self._client = httpx.Client(timeout=timeout)
        self._expected = base_model
        self._info: dict[str, Any] | None = None

    @property
    def base_model(self) -> str:
        """The base model the deployment hosts (asked once)."""
        if self._info is None:
            self._info = self.info()
            hosted = self._info.get("base_model")
            if self._expected and hosted and self._expected != hosted:
                raise ConfigError(
                    f"expected base model {self._expected!r} but {self.url} hosts {hosted!r}"
                )
        return str(self._info.get("base_model"))

    def info(self) -> dict[str, Any]:
        response = self._client.get(f"{self.url}/info")
        raise_for_error(response)
        data: dict[str, Any] = response.json()
        return data

    def generate(self, job: GenerationJob) -> GenerationResult:
        try:
            response = self._client.post(f"{self.url}/generate", json=job.model_dump(mode="json"))
        except httpx.HTTPError as e:  # unreachable, reset, timed out: worth a retry
            raise GeneratorError(f"generator at {self.url} unreachable: {e}") from e
        raise_for_error(response)
        return GenerationResult.model_validate(response.json())

    def close(self) -> None:
        self._client.close()
