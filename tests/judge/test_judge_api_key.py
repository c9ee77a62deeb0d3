"""The openai backend's key comes from the environment, so rubric files need not hold it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from judgeserve.judge.backends.openai_compat import OpenAIBackend
from judgeserve.judge.prompt import JudgePrompt
from judgeserve.settings import get_settings


class _Recorder(BaseHTTPRequestHandler):
    seen: ClassVar[list[str | None]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        type(self).seen.append(self.headers.get("authorization"))
        body = json.dumps({"choices": [{"message": {"content": "5"}}]}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Recorder.seen = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


PROMPT = JudgePrompt(system="s", user="u", answer_prefix="Score:", labels=("1", "5"), fence="f", prompt_hash="h")


def _ask(url: str, **options: str) -> str | None:
    backend = OpenAIBackend("m", url=url, **options)
    try:
        assert backend.generate([PROMPT], max_tokens=1) == ["5"]
    finally:
        backend.close()
    return _Recorder.seen[-1]


def test_key_read_from_the_environment(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUDGESERVE_JUDGE_API_KEY", "sk-from-env")
    get_settings.cache_clear()
    try:
        assert _ask(server) == "Bearer sk-from-env"
        assert _ask(server, api_key="sk-option") == "Bearer sk-option"  # an explicit one wins
        monkeypatch.delenv("JUDGESERVE_JUDGE_API_KEY")
        get_settings.cache_clear()
        assert _ask(server) is None
    finally:
        get_settings.cache_clear()
