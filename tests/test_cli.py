"""The command line: `judgeserve up` serves API + worker; bad options are named."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from judgeserve import JudgeClient
from judgeserve.settings import Settings

from .conftest import free_port, wait_for


def test_up_serves_api_and_worker(settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "JUDGESERVE_REDIS_URL": settings.redis_url,
           "JUDGESERVE_DATABASE_URL": settings.database_url,
           "JUDGESERVE_STREAM_PREFIX": settings.stream_prefix}
    log = open(tmp_path / "up.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "judgeserve.cli", "up", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        def healthy() -> bool:
            try:
                return httpx.get(f"{url}/healthz").status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, timeout=30)
        with JudgeClient(url, run="cli-run", spool_dir=settings.spool_dir) as client:
            client.submit(3, [{"prompt": "p", "completion": "four words right here"}])
            assert client.flush(10)

        def scored() -> bool:
            r = httpx.get(f"{url}/v1/runs/cli-run/steps/3")
            return r.status_code == 200 and bool(r.json()["samples"]) and bool(r.json()["samples"][0]["scores"])

        wait_for(scored, timeout=30)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
        log.close()


def test_bad_option_is_named() -> None:
    r = subprocess.run([sys.executable, "-m", "judgeserve.cli", "api", "--port", "notaport"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--port" in r.stderr


def test_bad_setting_is_named() -> None:
    env = {**os.environ, "JUDGESERVE_WORKER_BATCH": "0"}
    r = subprocess.run([sys.executable, "-m", "judgeserve.cli", "worker"], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "invalid setting JUDGESERVE_WORKER_BATCH" in r.stderr
    assert "Traceback" not in r.stderr
