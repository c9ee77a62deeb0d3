"""The JSON API (``/v1``): validates what trainers send, queues it, serves what was scored.

Reads go through :mod:`judgeserve.read`, who may call through :mod:`judgeserve.auth`;
:func:`judgeserve.app.create_app` composes this router with the web view's.
"""

from .routes import BacklogGauge, router

__all__ = ["router", "BacklogGauge"]
