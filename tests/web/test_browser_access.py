"""Access in a real browser, as a user gets it by default: auth on, log in with the local
token; a page of another site cannot make the browser resolve an alert (CSRF)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from judgeserve import read
from judgeserve.local_token import read_token, token_path
from judgeserve.schema import Alert
from judgeserve.settings import Settings
from judgeserve.store import Store

from ..conftest import LiveServer


def _evil_site(html: str) -> Iterator[str]:
    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = html.encode()
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        # Another origin: "localhost" and another port, as a site the user visits.
        yield f"http://localhost:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_login_with_local_token_and_no_cross_site_resolve(
    default_access: Settings, tmp_path: Path, browser: Any
) -> None:
    s = default_access.model_copy(update={"data_dir": tmp_path / "data"})
    server = LiveServer(s).start()
    store = Store(s.database_url)
    context = browser.new_context()
    try:
        token = read_token(token_path(s.data_dir))
        assert token
        store.claim_run("b-run", "local")
        alert_id = store.add_alert(Alert(run="b-run", step=1, rule="b.rule", message="m"))
        page = context.new_page()
        page.goto(f"{server.url}/alerts")
        assert "/login" in page.url
        page.fill("input[name=token]", token)
        page.click("button[type=submit]")
        page.wait_for_url(f"{server.url}/alerts")
        assert page.locator(f'tr[data-alert="{alert_id}"]').count() == 1

        form = (f'<form method="post" action="{server.url}/alerts/{alert_id}/resolve"></form>'
                "<script>document.forms[0].submit()</script>")
        for evil in _evil_site(form):
            with page.expect_response(lambda r: r.url.endswith("/resolve")) as answer:
                page.goto(evil)
            assert answer.value.status == 403  # refused by the Origin check, before any route
        assert [a.state for a in read.list_alerts(store, "b-run")] == ["open"]

        page.goto(f"{server.url}/alerts")  # the site's own page may
        page.locator(f'tr[data-alert="{alert_id}"] form.resolve button').click()
        page.wait_for_function(
            f"() => !document.querySelector('tr[data-alert=\"{alert_id}\"]')"
            f" || document.querySelector('tr[data-alert=\"{alert_id}\"]').className === 'state-resolved'"
        )
        assert [a.state for a in read.list_alerts(store, "b-run")] == ["resolved"]
    finally:
        context.close()
        store.close()
        server.stop()

