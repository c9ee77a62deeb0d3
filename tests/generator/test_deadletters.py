"""Never silent: a checkpoint job the generation worker gives up on is a dead letter that
users see where they look for them — ``GET /v1/deadletter`` and the web view's dead-letter
page — with its reason, and can requeue from there (the run page shows it waiting again).
Real parts: the API (in-process), a generation worker on the transformers engine, Redis."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from judgeserve import read
from judgeserve.app import create_app
from judgeserve.auth import create_token
from judgeserve.generation_worker import GenerationWorker
from judgeserve.probes import Probe
from judgeserve.settings import Settings
from judgeserve.store import Store
from judgeserve.testing.tiny_policy import FRUITS, TinyPolicy

PROBES = {"generation": {"max_new_tokens": 8, "samples": 0}}


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    s = Store.from_settings(settings)
    yield s
    s.close()


def _put_probes(api: TestClient, run: str, probes: list[Probe], **headers: str) -> None:
    body = {**PROBES, "probes": [{"id": p.id, "prompt": p.prompt} for p in probes]}
    r = api.put(f"/v1/runs/{run}/probes", json=body, headers=headers)
    assert r.status_code == 200, r.text


def _submit(api: TestClient, run: str, step: int, path: Path, **headers: str) -> None:
    r = api.post(f"/v1/runs/{run}/checkpoints", json={"step": step, "path": str(path), "kind": "lora"},
                 headers=headers)
    assert r.status_code == 202, r.text


def _generate(settings: Settings, store: Store, generator: Any) -> GenerationWorker:
    worker = GenerationWorker(settings, store=store, generator=generator)
    try:
        worker.run(idle_exit_s=0.5)
    finally:
        worker.close()  # the queue it made; the generator and store are the test's
    return worker


def test_a_failed_checkpoint_job_is_listed_with_its_reason_and_requeued(
    settings: Settings, store: Store, policy: TinyPolicy, probes: list[Probe],
    transformers_generator: Any, tmp_path: Path,
) -> None:
    saved = tmp_path / "out" / "checkpoint-100"
    shutil.copytree(policy.adapter("a"), saved)
    with TestClient(create_app(settings, store=store)) as api:
        _put_probes(api, "dl-ckpt", probes)
        _submit(api, "dl-ckpt", 100, saved)
        _submit(api, "dl-ckpt", 200, policy.adapter("b"))
        shutil.rmtree(saved)  # save_total_limit got there first
        worker = _generate(settings, store, transformers_generator)
        assert (worker.done, worker.failed) == (1, 1)
        reason = f"checkpoint folder gone: {saved} (deleted by save_total_limit?)"

        listed = api.get("/v1/deadletter").json()
        assert listed["deadletters"] == []  # no sample failed: the two lists are apart
        (dead,) = listed["checkpoints"]
        assert dead["error"] == reason and dead["deliveries"] == 1
        assert dead["payload"]["run"] == "dl-ckpt" and dead["payload"]["step"] == 100
        assert dead["payload"]["path"] == str(saved) and dead["payload"]["kind"] == "lora"

        page = api.get("/deadletter").text
        row = re.search(rf'<tr data-deadletter-job="{dead["id"]}">(.*?)</tr>', page, re.S)
        assert row, page
        assert reason in row.group(1) and f"<code>{saved}</code>" in row.group(1)
        assert 'href="/runs/dl-ckpt"' in row.group(1) and ">100<" in row.group(1)
        action = f"/deadletter/checkpoints/{dead['id']}/requeue"
        assert f'action="{action}"' in row.group(1)
        assert "No dead letters." in page  # the samples' table is empty, and says so

        # The folder is restored; requeued from the page, the job waits again and completes.
        shutil.copytree(policy.adapter("a"), saved)
        r = api.post(action, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/deadletter"
        assert api.get("/v1/deadletter").json()["checkpoints"] == []
        assert "No failed checkpoint jobs." in api.get("/deadletter").text
        job = read.checkpoint_job(store, "dl-ckpt", 100)
        assert job is not None and (job["state"], job["reason"]) == ("queued", None)
        assert api.post(action, follow_redirects=False).status_code == 404  # gone from the list
        worker = _generate(settings, store, transformers_generator)
        assert (worker.done, worker.failed) == (1, 0)
        job = read.checkpoint_job(store, "dl-ckpt", 100)
        assert job is not None and job["state"] == "generated" and job["samples"] == len(probes)

    queued = worker.queue.redis.xrange(f"{settings.stream_prefix}:samples")
    texts: dict[int, list[str]] = {100: [], 200: []}
    for _, fields in queued:
        sample = json.loads(fields[b"data"])
        texts[sample["step"]].append(sample["completion"])
    assert {t.split()[0] for t in texts[100]} == {FRUITS["a"]}
    assert len(texts[200]) == len(probes)


def test_each_project_sees_only_its_own_runs_failed_jobs(
    default_access: Settings, store: Store, policy: TinyPolicy, probes: list[Probe],
    transformers_generator: Any, tmp_path: Path,
) -> None:
    a, b = create_token(store, "team-a"), create_token(store, "team-b")
    gone = tmp_path / "checkpoint-5"
    with TestClient(create_app(default_access, store=store), base_url="http://127.0.0.1") as api:
        _put_probes(api, "run-a", probes, Authorization=f"Bearer {a}")
        _submit(api, "run-a", 5, gone, Authorization=f"Bearer {a}")
        _generate(default_access, store, transformers_generator)
        mine = api.get("/v1/deadletter", headers={"Authorization": f"Bearer {a}"}).json()
        assert [d["payload"]["step"] for d in mine["checkpoints"]] == [5]
        theirs = api.get("/v1/deadletter", headers={"Authorization": f"Bearer {b}"}).json()
        assert theirs == {"deadletters": [], "checkpoints": []}
        api.cookies.set("judgeserve_token", b)
        assert "checkpoint-5" not in api.get("/deadletter").text
        entry = mine["checkpoints"][0]["id"]
        r = api.post(f"/deadletter/checkpoints/{entry}/requeue", follow_redirects=False)
        assert r.status_code == 403
        api.cookies.set("judgeserve_token", a)
        assert "checkpoint-5" in api.get("/deadletter").text
