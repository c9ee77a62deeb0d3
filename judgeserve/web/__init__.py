"""The web view: runs, quality next to loss, samples with the failure highlighted.

Jinja templates and static files ship in the package, charts are drawn by uPlot
(vendored in ``static/`` with its license), so the pages work with no network. Reads go
through :mod:`judgeserve.read` (the pages add presentation only); live updates through
:mod:`.live`; who may look through :func:`.login.require_viewer`.
:func:`judgeserve.app.create_app` includes :data:`routers` and mounts :data:`STATIC_DIR`
at ``/static``. See docs/web.md.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter

from .login import login_router, require_viewer
from .views import router

__all__ = ["routers", "require_viewer", "STATIC_DIR"]

STATIC_DIR = Path(__file__).parent / "static"
# The login pages are open to all; every other page goes through ``require_viewer``.
routers: list[APIRouter] = [login_router, router]
