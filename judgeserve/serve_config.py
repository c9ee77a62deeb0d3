"""Deploying a Ray Serve config file: every application in it (the judge, the generator).

``deploy/serve.yaml`` is in Ray Serve's own format (``serve run`` / ``serve deploy`` and
KubeRay's ``serveConfigV2`` read it unchanged); ``judgeserve serve`` deploys it through
:func:`run`, locally or onto a running cluster. An application module that offers
``bind(args, deployment_options)`` beside its ``build_app`` (judgeserve's own do) gets the
file's ``deployments:`` overrides (replicas, CPUs, GPUs) applied here, as Ray's CLI would;
any other application is built by its builder alone.
"""

from __future__ import annotations

import logging
import pkgutil
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from .exceptions import ConfigError, require

__all__ = ["run", "DEFAULT_CONFIG"]

log = logging.getLogger(__name__)
DEFAULT_CONFIG = Path("deploy/serve.yaml")


def run(
    config: str | Path = DEFAULT_CONFIG,
    *,
    blocking: bool = True,
    ray_address: str | None = None,
    num_cpus: int | None = None,
) -> dict[str, Any]:
    """Start Ray (or join ``ray_address``) and deploy every application in a serve.yaml.

    Returns deployment handles by application name; with ``blocking`` it serves until
    interrupted.
    """
    import yaml

    ray: Any = require("ray", "judge")
    from ray import serve
    from ray.serve.schema import ServeDeploySchema

    path = Path(config)
    try:
        schema = ServeDeploySchema.model_validate(yaml.safe_load(path.read_text()))
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from e
    except Exception as e:  # pydantic / YAML errors, shown with the file name
        raise ConfigError(f"{path}: not a valid Ray Serve config: {e}") from e
    if not ray.is_initialized():
        ray.init(address=ray_address, num_cpus=num_cpus, include_dashboard=False)
    http = schema.http_options.model_dump(exclude_unset=True) if schema.http_options else {}
    serve.start(http_options=http)
    handles: dict[str, Any] = {}
    for app in schema.applications:
        builder = pkgutil.resolve_name(app.import_path)
        module = sys.modules.get(getattr(builder, "__module__", ""))
        bind = getattr(module, "bind", None)
        if getattr(builder, "__name__", "") == "build_app" and callable(bind):
            options: dict[str, Any] = {}
            for dep in app.deployments:
                options.update(dep.model_dump(exclude_unset=True, exclude={"name"}))
            application = bind(app.args or {}, options or None)
        else:  # someone else's application: Ray's own `serve run` applies its overrides
            application = builder(app.args or {})
        handles[app.name] = serve.run(application, name=app.name, route_prefix=app.route_prefix)
        log.info("application %r serving at %s", app.name, app.route_prefix)
    if blocking:
        _serve_until_signalled(serve, ray)
    return handles


def _serve_until_signalled(serve: Any, ray: Any) -> None:
    """Block until SIGTERM or SIGINT, then shut Serve and Ray down and return.

    Ray's core worker installs a fatal-signal handler that answers SIGTERM with a native
    stack dump and a killed process; a service manager's plain stop deserves a clean exit.
    """
    stop = threading.Event()
    received: list[int] = []

    def _stop(signum: int, _frame: Any) -> None:
        received.append(signum)
        stop.set()

    previous = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stop.wait(1.0):
            pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    name = signal.Signals(received[0]).name if received else "a signal"
    log.info("%s: shutting down Ray Serve", name)
    serve.shutdown()
    ray.shutdown()
