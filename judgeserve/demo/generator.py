"""The demo's generator: a local Ray Serve instance hosting the ``generator`` application.

Checkpoint mode as it runs in production, on one machine: Ray starts here (two CPUs),
Serve deploys :mod:`judgeserve.generator.serve` with the transformers backend hosting the
demo model's initial weights as the base (the demo trains every weight, so each
checkpoint is a full one, loaded fresh by the replica), and the generation worker in the
demo's stack talks to it over HTTP like ``JUDGESERVE_GENERATOR=serve`` would.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..exceptions import require

__all__ = ["local_generator"]


@contextmanager
def local_generator(base_model: Path, port: int, workdir: Path) -> Iterator[str]:
    """Start Ray and Serve with the generator application; yields its URL
    (``http://127.0.0.1:<port>/generator``) once it answers, shuts both down after."""
    import yaml

    ray: Any = require("ray", "generator")
    require("ray.serve", "generator")
    from ray import serve

    from ..serve_config import run

    config = {
        "http_options": {"host": "127.0.0.1", "port": port},
        "applications": [
            {
                "name": "generator",
                "route_prefix": "/generator",
                "import_path": "judgeserve.generator.serve:build_app",
                "args": {
                    "backend": "transformers",
                    "base_model": str(base_model),
                    "options": {"threads": 1, "max_adapters": 2},
                },
                "deployments": [
                    {"name": "GeneratorDeployment", "ray_actor_options": {"num_cpus": 1}}
                ],
            }
        ],
    }
    path = workdir / "serve.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    started_ray = not ray.is_initialized()
    if started_ray:
        # Ray's and Serve's own INFO lines would interleave with the demo's console.
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    logging.getLogger("ray.serve").setLevel(logging.ERROR)
    try:
        run(path, blocking=False)
        url = f"http://127.0.0.1:{port}/generator"
        _wait_healthy(url, timeout=120)
        yield url
    finally:
        if started_ray:
            ray.shutdown()  # Serve's actors with it
        else:
            serve.shutdown()  # type: ignore[no-untyped-call]


def _wait_healthy(url: str, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the generator at {url} did not become healthy in {timeout:.0f}s")
        time.sleep(0.25)
