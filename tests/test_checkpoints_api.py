"""Checkpoint mode's API: probe sets (PUT/GET /probes) and checkpoint jobs (POST/GET
/checkpoints), validated like samples: 422s name the field, nothing bad is queued."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from judgeserve.app import create_app
from judgeserve.schema import MAX_TEXT_BYTES
from judgeserve.settings import Settings


@pytest.fixture
def api(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


PROBES = [
    {"id": "capital", "prompt": "Question: capital of Velmora?\nAnswer:", "reference": "Karo"},
    {"id": "train-1", "training_prefix": "Question: who founded Velmora?\nAnswer:"},
]


def probe_set(**generation: Any) -> dict[str, Any]:
    return {"probes": PROBES, "generation": {"max_new_tokens": 16, "samples": 1, **generation}}


def fields(resp: Any) -> list[str]:
    return [".".join(str(p) for p in e["loc"]) for e in resp.json()["detail"]]


def jobs(settings: Settings) -> list[dict[str, Any]]:
    r = redis.Redis.from_url(settings.redis_url)
    try:
        return [json.loads(f[b"data"]) for _, f in r.xrange(f"{settings.stream_prefix}:checkpoints")]
    finally:
        r.close()


def test_a_probe_set_is_stored_versioned_by_content(api: TestClient) -> None:
    r = api.put("/v1/runs/r1/probes", json=probe_set())
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["probes"] == 2 and first["completions"] == 4  # greedy + 1 sampled, per probe
    assert len(first["version"]) == 16 and int(first["version"], 16) >= 0
    got = api.get("/v1/runs/r1/probes").json()
    assert got["version"] == first["version"]
    assert [p["id"] for p in got["probes"]] == ["capital", "train-1"]
    assert got["probes"][1] == {
        "id": "train-1",
        "prompt": PROBES[1]["training_prefix"],
        "reference": None,
        "kind": "training_prefix",
        "tags": {},
    }
    assert got["generation"]["max_new_tokens"] == 16 and got["generation"]["samples"] == 1
    # Other decoding settings: another version, now current; the old one stays readable.
    second = api.put("/v1/runs/r1/probes", json=probe_set(seed=7)).json()["version"]
    assert second != first["version"]
    assert api.get("/v1/runs/r1/probes").json()["version"] == second
    old = api.get("/v1/runs/r1/probes", params={"version": first["version"]}).json()
    assert old["generation"]["seed"] == 0
    # The same content again is the same version, and current again.
    assert api.put("/v1/runs/r1/probes", json=probe_set()).json()["version"] == first["version"]
    assert api.get("/v1/runs/r1/probes").json()["version"] == first["version"]
    # The batch size only sizes forward passes: not part of the version.
    same = api.put("/v1/runs/r1/probes", json=probe_set(batch_size=3)).json()["version"]
    assert same == first["version"]


def test_no_probe_set_is_a_404(api: TestClient) -> None:
    r = api.get("/v1/runs/nothing-yet/probes")
    assert r.status_code == 404 and "PUT /v1/runs/nothing-yet/probes" in r.json()["detail"]
    api.put("/v1/runs/r2/probes", json=probe_set())
    assert api.get("/v1/runs/r2/probes", params={"version": "0" * 16}).status_code == 404
    assert api.get("/v1/runs/r2/probes", params={"version": "nothex"}).status_code == 422


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (lambda b: b["probes"][0].pop("prompt"), "body.probes.0.prompt", "required"),
        (
            lambda b: b["probes"][0].update(prompt="x" * (MAX_TEXT_BYTES + 1)),
            "body.probes.0.prompt",
            "64 KiB",
        ),
        (lambda b: b["probes"][1].update(prompt="p"), "body.probes.1", "not both"),
        (lambda b: b["probes"][0].update(colour="red"), "body.probes.0.colour", "not permitted"),
        (lambda b: b["probes"][0].update(id=""), "body.probes.0.id", "at least 1"),
        (lambda b: b["probes"][1].update(id="capital"), "body.probes", "repeated: ['capital']"),
        (lambda b: b.update(probes=[]), "body.probes", "at least 1"),
        (lambda b: b["generation"].update(samples=65), "body.generation.samples", "64"),
        (lambda b: b["generation"].update(max_new_tokens=0), "body.generation.max_new_tokens", "1"),
        (lambda b: b["generation"].update(stop=[""]), "body.generation", "stop strings"),
        (
            lambda b: b.update(probes=[{"id": str(i), "prompt": "p"} for i in range(2000)])
            or b["generation"].update(samples=60),
            "body.generation",
            "the limit is 100000",
        ),
    ],
)
def test_a_bad_probe_set_names_the_field(
    api: TestClient, change: Any, field: str, words: str
) -> None:
    body = json.loads(json.dumps(probe_set()))
    change(body)
    r = api.put("/v1/runs/r3/probes", json=body)
    assert r.status_code == 422, r.text
    assert field in fields(r)
    assert any(words in e["msg"] for e in r.json()["detail"]), r.json()
    assert api.get("/v1/runs/r3/probes").status_code == 404  # nothing stored


def test_a_checkpoint_is_queued_as_a_job(api: TestClient, settings: Settings) -> None:
    version = api.put("/v1/runs/r4/probes", json=probe_set()).json()["version"]
    body = {"step": 400, "path": "/shared/r4/checkpoint-400", "kind": "lora", "base_model": "/m/base"}
    r = api.post("/v1/runs/r4/checkpoints", json=body)
    assert r.status_code == 202, r.text
    assert r.json()["probe_set"] == version and r.json()["step"] == 400
    (job,) = jobs(settings)
    assert {k: job[k] for k in ("run", "step", "path", "kind", "base_model", "probe_set")} == {
        "run": "r4", "step": 400, "path": "/shared/r4/checkpoint-400", "kind": "lora",
        "base_model": "/m/base", "probe_set": version,
    }
    listed = api.get("/v1/runs/r4/checkpoints").json()
    assert listed["total"] == 1
    (row,) = listed["checkpoints"]
    assert row["state"] == "queued" and row["path"] == body["path"] and row["probe_set"] == version
    assert api.get("/v1/runs/r4/checkpoints/400").json()["state"] == "queued"
    assert api.get("/v1/runs/r4/checkpoints/401").status_code == 404
    # A later probe set does not change what an earlier job generates; a job may name one.
    newer = api.put("/v1/runs/r4/probes", json=probe_set(seed=3)).json()["version"]
    r = api.post(
        "/v1/runs/r4/checkpoints",
        json={"step": 500, "path": "s3://bucket/r4/ckpt-500", "kind": "full", "probe_set": version},
    )
    assert r.status_code == 202, r.text
    assert [j["probe_set"] for j in jobs(settings)] == [version, version]
    api.post("/v1/runs/r4/checkpoints", json={"step": 600, "path": "/shared/r4/checkpoint-600"})
    assert jobs(settings)[-1]["probe_set"] == newer and jobs(settings)[-1]["kind"] == "lora"


def test_a_checkpoint_before_any_probe_set_is_refused(api: TestClient, settings: Settings) -> None:
    r = api.post("/v1/runs/r5/checkpoints", json={"step": 1, "path": "/shared/ckpt"})
    assert r.status_code == 409 and "set_probes" in r.json()["detail"]
    assert jobs(settings) == []


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"step": 1, "path": "checkpoint-1"}, "body.path", "absolute path"),
        ({"step": 1, "path": ""}, "body.path", "at least 1"),
        ({"step": 1, "path": "/a\x00b"}, "body.path", "NUL"),
        ({"step": 1, "path": "/" + "a" * 4096}, "body.path", "4096"),
        ({"step": 1, "path": "nosuchfs://bucket/x"}, "body.path", "no fsspec filesystem"),
        ({"step": -1, "path": "/c"}, "body.step", "greater than or equal to 0"),
        ({"path": "/c"}, "body.step", "required"),
        ({"step": 1, "path": "/c", "kind": "merged"}, "body.kind", "'lora' or 'full'"),
        ({"step": 1, "path": "/c", "base_model": ""}, "body.base_model", "at least 1"),
        ({"step": 1, "path": "/c", "probe_set": "latest"}, "body.probe_set", "pattern"),
        ({"step": 1, "path": "/c", "probe_set": "0" * 16}, "body.probe_set", "no probe set"),
        ({"step": 1, "path": "/c", "adapter": "x"}, "body.adapter", "not permitted"),
    ],
)
def test_a_bad_checkpoint_request_names_the_field(
    api: TestClient, settings: Settings, body: dict[str, Any], field: str, words: str
) -> None:
    api.put("/v1/runs/r6/probes", json=probe_set())
    r = api.post("/v1/runs/r6/checkpoints", json=body)
    assert r.status_code == 422, r.text
    assert field in fields(r)
    assert any(words in e["msg"] for e in r.json()["detail"]), r.json()
    assert jobs(settings) == []
    assert api.get("/v1/runs/r6/checkpoints").json()["checkpoints"] == []


def test_checkpoint_urls_need_the_fsspec_extra(
    api: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.put("/v1/runs/r7/probes", json=probe_set())
    monkeypatch.setitem(sys.modules, "fsspec", None)  # as if it were not installed
    r = api.post("/v1/runs/r7/checkpoints", json={"step": 1, "path": "s3://bucket/ckpt"})
    assert r.status_code == 422 and fields(r) == ["body.path"]
    assert "pip install 'judgeserve[fsspec]'" in r.json()["detail"][0]["msg"]
    # Local paths (file:// too) need no extra.
    assert api.post("/v1/runs/r7/checkpoints", json={"step": 2, "path": "file:///c"}).status_code == 202
    assert [j["step"] for j in jobs(settings)] == [2]


def test_an_unknown_run_has_no_checkpoints(api: TestClient) -> None:
    assert api.get("/v1/runs/ghost/checkpoints").status_code == 404


def test_the_sdk_sets_probes_and_submits_checkpoints_through_its_journal(
    live_api: Any, settings: Settings, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from judgeserve import JudgeClient
    from judgeserve.exceptions import ClientError, ConfigError

    monkeypatch.chdir(tmp_path)
    client = JudgeClient(live_api.url, run="sdk-run", spool_dir=tmp_path / "spool")
    try:
        version = client.set_probes(PROBES, generation={"max_new_tokens": 16, "samples": 1})
        client.submit_checkpoint(100, "out/checkpoint-100")  # relative: made absolute here
        client.submit_checkpoint(200, tmp_path / "full-200", kind="full")
        with pytest.raises(ClientError, match="kind"):
            client.submit_checkpoint(300, "/c", kind="merged")  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="unique"):  # checked in the trainer, not sent
            client.set_probes([{"id": "x", "prompt": "a"}, {"id": "x", "prompt": "b"}])
        with pytest.raises(ValueError, match="at least one sampled"):
            client.set_probes(PROBES, generation={"greedy": False})
        assert client.flush(20)
        assert client.errors == []
        assert client.set_probes(PROBES, generation={"max_new_tokens": 16, "samples": 1}) == version
        stored = httpx_get(live_api.url, "/v1/runs/sdk-run/probes")
        assert stored["version"] == version and len(stored["probes"]) == 2
        queued = {j["step"]: j for j in client.checkpoints()}
        assert sorted(queued) == [100, 200]
        assert queued[100]["path"] == str(tmp_path / "out" / "checkpoint-100")
        assert queued[100]["kind"] == "lora" and queued[200]["kind"] == "full"
        assert {j["probe_set"] for j in queued.values()} == {version}
        assert [j["step"] for j in jobs(settings)] == [100, 200]
    finally:
        client.close(10)


def httpx_get(url: str, path: str) -> Any:
    import httpx

    return httpx.get(url + path, timeout=10).json()


def test_probe_sets_and_job_states_in_both_stores(database_url: str) -> None:
    from judgeserve import read
    from judgeserve.store import Store

    store = Store(database_url)
    try:
        content = {"probes": PROBES[:1], "generation": {"max_new_tokens": 8}, "completions": 1}
        store.save_probe_set("run-s", "a" * 16, content)
        store.save_probe_set("run-s", "b" * 16, {**content, "completions": 2})
        assert read.probe_set(store, "run-s")["version"] == "b" * 16  # type: ignore[index]
        store.save_probe_set("run-s", "a" * 16, content)  # again: current again
        assert read.probe_set(store, "run-s")["version"] == "a" * 16  # type: ignore[index]
        job = {"path": "/c/1", "kind": "full", "probe_set": "a" * 16}
        store.queue_checkpoint("run-s", 1, job)
        store.update_checkpoint_job("run-s", 1, "generating")
        store.update_checkpoint_job("run-s", 1, "retrying", reason="engine down")
        store.update_checkpoint_job("run-s", 1, "generating")
        store.update_checkpoint_job("run-s", 1, "generated", samples=3, generator={"backend": "x"})
        # A job whose row the API never wrote gets one from its payload.
        store.update_checkpoint_job("run-s", 2, "failed", job=job, reason="gone")
        one, two = read.checkpoint_job(store, "run-s", 1), read.checkpoint_job(store, "run-s", 2)
        assert one is not None and two is not None
        assert (one["state"], one["attempts"], one["samples"]) == ("generated", 2, 3)
        assert one["generator"] == {"backend": "x"} and one["finished"].tzinfo is not None
        assert (two["state"], two["reason"], two["path"]) == ("failed", "gone", "/c/1")
        assert [j["step"] for j in read.list_checkpoint_jobs(store, "run-s")] == [2, 1]
        # Scored once the checkpoint's alert rules ran on its samples.
        store.set_expected("run-s", 1, 3)
        store.mark_evaluated("run-s", 1)
        assert read.checkpoint_job(store, "run-s", 1)["state"] == "scored"  # type: ignore[index]
        with pytest.raises(ValueError, match="unknown job state"):
            store.update_checkpoint_job("run-s", 1, "done")
    finally:
        store.drop()
        store.close()


def test_no_checkpoint_job_while_scoring_is_too_far_behind(settings: Settings) -> None:
    with TestClient(create_app(settings.model_copy(update={"max_backlog": 2}))) as api:
        api.put("/v1/runs/r8/probes", json=probe_set())
        api.post("/v1/runs/r8/samples", json={"step": 1, "samples": [
            {"id": f"s{i}", "prompt": "p", "completion": "c"} for i in range(3)]})
        r = api.post("/v1/runs/r8/checkpoints", json={"step": 2, "path": "/c"})
        assert r.status_code == 429 and r.headers["retry-after"]
    assert jobs(settings) == []


def test_probe_sets_and_checkpoints_wait_out_an_api_outage(settings: Settings) -> None:
    """The trainer never waits: with the API down both calls return at once, and the
    journal delivers them, in order, once it is back."""
    import time

    from judgeserve import JudgeClient

    from .conftest import LiveServer

    url = f"http://127.0.0.1:{settings.port}"  # nothing listens there yet
    client = JudgeClient(url, run="outage", spool_dir=settings.spool_dir, max_backoff_s=0.5)
    try:
        started = time.perf_counter()
        version = client.set_probes(PROBES)
        for step in (100, 200):
            client.submit_checkpoint(step, f"/shared/outage/checkpoint-{step}")
        assert time.perf_counter() - started < 1.0
        assert client.flush(timeout=1.0) is False  # cannot deliver yet
        server = LiveServer(settings).start()
        try:
            assert client.flush(timeout=30) is True
            assert client.errors == []
            assert [(j["step"], j["probe_set"]) for j in jobs(settings)] == [(100, version), (200, version)]
        finally:
            server.stop()
    finally:
        client.close(5)
