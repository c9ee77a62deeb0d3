"""The web view: runs, quality next to loss, samples with the failure highlighted.

Served by the API's FastAPI app (:func:`install`): Jinja templates and static files ship
in the package, charts are drawn by uPlot (vendored in ``static/`` with its license), so
the pages work with no network. Reads go through :mod:`.queries`; live updates through
:mod:`.live`; who may look through :func:`.auth.require_viewer`. See docs/web.md.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from .auth import login_router, require_viewer
from .views import router

__all__ = ["install", "router", "require_viewer", "STATIC_DIR"]

STATIC_DIR = Path(__file__).parent / "static"


def install(app: FastAPI) -> None:
    """Serve the pages and their static files from ``app``."""
    app.include_router(login_router)
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
