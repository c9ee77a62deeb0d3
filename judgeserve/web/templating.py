"""Rendering: one Jinja environment (autoescape on, strict undefined), filters and URLs.

Every user-supplied string reaches the page through ``{{ ... }}`` and is escaped; no
template uses ``|safe`` (a test checks). Pages are also sent with a Content-Security-
Policy that allows scripts from the view's own static files only, so even a missed
escape could not run an inline script.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from .. import __version__
from .spans import css_family

__all__ = ["render", "not_found", "Urls", "CSP", "fmt_num", "env"]

HERE = Path(__file__).parent
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)


class Urls:
    """Links of the view, under the app's root path; every path part is percent-quoted."""

    def __init__(self, root: str = "") -> None:
        self.root = root.rstrip("/")

    def _q(self, part: object) -> str:
        return quote(str(part), safe="")

    def home(self) -> str:
        return f"{self.root}/"

    def run(self, run: str, **query: Any) -> str:
        return self._with(f"{self.root}/runs/{self._q(run)}", query)

    def step(self, run: str, step: int, **query: Any) -> str:
        return self._with(f"{self.root}/runs/{self._q(run)}/steps/{int(step)}", query)

    def sample(self, run: str, sample_id: str) -> str:
        return f"{self.root}/runs/{self._q(run)}/samples/{self._q(sample_id)}"

    def charts(self, run: str) -> str:
        return f"{self.root}/runs/{self._q(run)}/charts.json"

    def compare(self, run: str, **query: Any) -> str:
        return self._with(f"{self.root}/runs/{self._q(run)}/compare", query)

    def overlay(self, **query: Any) -> str:
        return self._with(f"{self.root}/compare", query)

    def alerts(self, **query: Any) -> str:
        return self._with(f"{self.root}/alerts", query)

    def resolve(self, alert_id: int) -> str:
        return f"{self.root}/alerts/{int(alert_id)}/resolve"

    def rubrics(self) -> str:
        return f"{self.root}/rubrics"

    def rubric(self, name: str) -> str:
        return f"{self.root}/rubrics/{self._q(name)}"

    def label(self, rubric: str, **query: Any) -> str:
        return self._with(f"{self.root}/rubrics/{self._q(rubric)}/label", query)

    def undo_label(self, rubric: str) -> str:
        return f"{self.root}/rubrics/{self._q(rubric)}/label/undo"

    def deadletter(self) -> str:
        return f"{self.root}/deadletter"

    def requeue(self, entry_id: str) -> str:
        return f"{self.root}/deadletter/{self._q(entry_id)}/requeue"

    def requeue_job(self, entry_id: str) -> str:
        return f"{self.root}/deadletter/checkpoints/{self._q(entry_id)}/requeue"

    def live(self, **query: Any) -> str:
        return self._with(f"{self.root}/live", query)

    def static(self, name: str) -> str:
        return f"{self.root}/static/{self._q(name)}?v={__version__}"

    @staticmethod
    def _with(path: str, query: dict[str, Any]) -> str:
        query = {k: v for k, v in query.items() if not (v is None or v is False or v == "")}
        return f"{path}?{urlencode(query)}" if query else path


def fmt_num(x: Any, digits: int = 3) -> str:
    """A score for people: ``True`` → ``yes``, 12.0 → ``12``, 0.123456 → ``0.123``."""
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    f = float(x)
    if not math.isfinite(f):
        return str(f)
    if f == int(f) and abs(f) < 1e15:
        return str(int(f))
    if abs(f) >= 1000:
        return f"{f:,.0f}"
    return f"{f:.{digits}g}" if abs(f) < 1e-3 else f"{f:.{digits}f}".rstrip("0").rstrip(".")


def _utc(dt: datetime | None) -> datetime | None:
    if dt is not None and dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt


def fmt_ago(dt: datetime | None) -> str:
    dt = _utc(dt)
    if dt is None:
        return "—"
    s = max(0, int((datetime.now(UTC) - dt).total_seconds()))
    for unit, n in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= n:
            return f"{s // n} {unit} ago"
    return f"{s} s ago"


def fmt_iso(dt: datetime | None) -> str:
    dt = _utc(dt)
    return dt.isoformat(timespec="seconds") if dt else ""


def _pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
env.filters.update(num=fmt_num, ago=fmt_ago, iso=fmt_iso, pretty=_pretty_json, family=css_family)


def render(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    """Render a page; ``live_scope`` in the context names what the live stream watches."""
    urls = Urls(request.scope.get("root_path", ""))
    context = {"live_run": None, "live_since": None, **context}
    html = env.get_template(name).render(
        request=request, urls=urls, version=__version__, **context
    )
    return HTMLResponse(
        html,
        status_code=status_code,
        headers={
            "Content-Security-Policy": CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
            "Cache-Control": "no-store",
        },
    )


def not_found(request: Request, message: str) -> HTMLResponse:
    return render(request, "404.html", {"title": "Not found", "message": message}, 404)
