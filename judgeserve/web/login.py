"""Logging in to the view, and the one gate every page, chart feed and live stream passes.

``require_viewer`` is a dependency of the whole pages router (see ``views/__init__.py``),
so no page can be added without it. With auth off it lets everyone in. With auth on it
takes the same tokens as the API — the ``judgeserve_token`` cookie set by the login
form, or an ``Authorization: Bearer`` header — through the same check
(:mod:`judgeserve.auth`): no token sends a browser to ``/login`` (and a feed or stream
gets 401); a run of another project is a 403; lists show only the viewer's project. The
static files stay public.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ..auth import ANYONE, COOKIE, Principal, check_run, principal
from .templating import Urls, render

__all__ = ["require_viewer", "viewer", "viewer_project", "TOKEN_COOKIE", "login_router"]

TOKEN_COOKIE = COOKIE
COOKIE_MAX_AGE = 30 * 24 * 3600
login_router = APIRouter(include_in_schema=False)


def _wants_page(request: Request) -> bool:
    path = request.url.path
    return request.method == "GET" and not path.endswith(".json") and not path.endswith("/live")


def require_viewer(request: Request) -> None:
    """Let the request see the view, or raise (redirect to /login, 401 or 403)."""
    try:
        who = principal(request)
    except HTTPException:
        if _wants_page(request):
            target = Urls(request.scope.get("root_path", "")).home() + "login?next=" + quote(
                str(request.url.path), safe="/"
            )
            raise HTTPException(303, "log in first", {"Location": target}) from None
        raise
    request.state.viewer = who
    run = request.path_params.get("run") or request.query_params.get("run")
    if run:
        check_run(request, who, str(run), write=False)


def viewer(request: Request) -> Principal:
    found: Principal = getattr(request.state, "viewer", ANYONE)
    return found


def viewer_project(request: Request) -> str | None:
    """The project whose runs the viewer may see; None means all (auth off)."""
    return viewer(request).project


def _safe_next(target: str | None) -> str:
    # Only paths on this site: never an absolute URL an attacker could plant in ?next=.
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return "/"


@login_router.get("/login", response_class=HTMLResponse)
def login_page(
    request: Request, next: Annotated[str | None, Query(max_length=2000)] = None
) -> HTMLResponse:
    return render(request, "login.html", {"title": "Log in", "next": _safe_next(next), "error": None})


@login_router.post("/login")
async def login(request: Request) -> Response:
    """Check the posted token like the API would; keep it in an HttpOnly cookie."""
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0].strip()
    if not (token.isascii() and token.isprintable()):
        token = ""  # no token looks like that, and a cookie header could not carry it
    target = _safe_next((form.get("next") or ["/"])[0])
    cache = request.app.state.tokens
    found = cache.principal(request.app.state.store, token) if token else None
    if request.app.state.auth and found is None:
        return render(
            request,
            "login.html",
            {"title": "Log in", "next": target, "error": "That token is not valid."},
            status_code=401,
        )
    resp = RedirectResponse(target, status_code=303)
    resp.set_cookie(
        TOKEN_COOKIE,
        token,
        max_age=COOKIE_MAX_AGE,
        httponly=True,
        samesite="strict",  # the resolve button posts with this cookie: no cross-site posts
        secure=request.url.scheme == "https",
    )
    return resp


@login_router.post("/logout")
def logout() -> Response:
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(TOKEN_COOKIE)
    return resp
