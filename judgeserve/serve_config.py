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
    if not blocking:
        return _deploy(schema, serve)
    # From here on SIGTERM/SIGINT are ours: ray.init installed the core worker's
    # fatal-signal handler, which answers SIGTERM with a native stack dump and a killed
    # process. A signal that comes while the applications still deploy (a service manager
    # stopping a slow start) ends the deploy; either way Serve and Ray are shut down.
    received: list[int] = []
    stop = threading.Event()

    def _stop(signum: int, _frame: Any) -> None:
        received.append(signum)
        stop.set()
        if not serving.is_set():
            raise _Stopped

    serving = threading.Event()
    previous = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}
    handles: dict[str, Any] = {}
    try:
        handles = _deploy(schema, serve)
        serving.set()
        while not stop.wait(1.0):
            pass
    except _Stopped:
        pass
    finally:
        name = signal.Signals(received[0]).name if received else "an error"
        log.info("%s: shutting down Ray Serve", name)
        try:
            _shutdown(serve, ray)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
    return handles


class _Stopped(BaseException):  # control flow, not an error: like KeyboardInterrupt
    """A stop signal that came while the applications were still deploying (a
    BaseException, so that no ``except Exception`` in Ray's waiting code swallows it)."""


def _shutdown(serve: Any, ray: Any) -> None:
    serve.shutdown()
    ray.shutdown()


def _deploy(schema: Any, serve: Any) -> dict[str, Any]:
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
    return handles
