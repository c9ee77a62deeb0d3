"""The command line: `judgeserve up` serves API + worker; bad options are named."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from judgeserve import JudgeClient
from judgeserve.local_token import read_token, token_path
from judgeserve.settings import Settings

from .conftest import free_port, wait_for


def test_up_serves_api_and_worker(settings: Settings, tmp_path: Path, private_data_dir: Path) -> None:
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
        # Auth is on: the first start made the local token (in JUDGESERVE_DATA_DIR, which
        # the tests' environment points at), and the SDK finds it there by itself.
        with JudgeClient(url, run="cli-run", spool_dir=settings.spool_dir) as client:
            client.submit(3, [{"prompt": "p", "completion": "four words right here"}])
            assert client.flush(10) and client.errors == []
        assert httpx.get(f"{url}/v1/runs/cli-run").status_code == 401
        token = read_token(token_path(private_data_dir))
        assert token

        def scored() -> bool:
            r = httpx.get(f"{url}/v1/runs/cli-run/steps/3", headers={"Authorization": f"Bearer {token}"})
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


@pytest.mark.parametrize("run", ["{victim}", "../victim", "a/b"])
def test_index_build_takes_run_names_not_paths(tmp_path: Path, run: str) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    data = tmp_path / "train.txt"
    data.write_text("some training text " * 20)
    env = {**os.environ, "JUDGESERVE_INDEX_DIR": str(tmp_path / "indexes")}
    r = subprocess.run([sys.executable, "-m", "judgeserve.cli", "index", "build", str(data),
                        "--run", run.format(victim=victim)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 1 and "invalid run name" in r.stderr and "Traceback" not in r.stderr
    assert (victim / "precious.txt").read_text() == "keep me"
