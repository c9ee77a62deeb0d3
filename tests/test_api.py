"""Bad input gets a 4xx naming the problem, and the service keeps serving."""

from __future__ import annotations

import json
from collections.abc import Iterator

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


def ok_batch(n: int = 1, **over: object) -> dict:
    body = {"step": 1, "samples": [{"id": f"s{i}", "prompt": "p", "completion": "c"} for i in range(n)]}
    body.update(over)
    return body


def stream_len(settings: Settings) -> int:
    return int(redis.Redis.from_url(settings.redis_url).xlen(f"{settings.stream_prefix}:samples"))


def fields(resp: object) -> list[str]:
    return [".".join(str(p) for p in e["loc"]) for e in resp.json()["detail"]]  # type: ignore[attr-defined]


def test_valid_batch_is_queued(api: TestClient, settings: Settings) -> None:
    r = api.post("/v1/runs/good-run/samples", json=ok_batch(3))
    assert r.status_code == 202 and r.json()["accepted"] == 3
    assert stream_len(settings) == 3


def test_malformed_json(api: TestClient, settings: Settings) -> None:
    r = api.post("/v1/runs/r/samples", content=b'{"step": 1, "samples": [', headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["type"] == "json_invalid"
    assert stream_len(settings) == 0


@pytest.mark.parametrize("missing", ["completion", "id"])
def test_missing_field_is_named(api: TestClient, missing: str) -> None:
    body = ok_batch(1)
    del body["samples"][0][missing]
    r = api.post("/v1/runs/r/samples", json=body)
    assert r.status_code == 422
    assert f"body.samples.0.{missing}" in fields(r)


def test_missing_step_is_named(api: TestClient) -> None:
    body = ok_batch(1)
    del body["step"]
    r = api.post("/v1/runs/r/samples", json=body)
    assert r.status_code == 422 and "body.step" in fields(r)


def test_oversized_completion_names_the_limit(api: TestClient, settings: Settings) -> None:
    body = ok_batch(2)
    body["samples"][1]["completion"] = "é" * (MAX_TEXT_BYTES // 2 + 1)  # 2 bytes each: over by bytes
    r = api.post("/v1/runs/r/samples", json=body)
    assert r.status_code == 422
    assert "body.samples.1.completion" in fields(r)
    assert "64 KiB" in r.json()["detail"][0]["msg"]
    assert stream_len(settings) == 0  # all or nothing: the valid sample was not half-accepted


def test_more_than_1000_samples_names_the_limit(api: TestClient) -> None:
    r = api.post("/v1/runs/r/samples", json=ok_batch(1001))
    assert r.status_code == 422
    assert fields(r) == ["body.samples"] and "1000" in r.json()["detail"][0]["msg"]


@pytest.mark.parametrize("run", ["-starts-with-dash", "has space", "x" * 129, "semi;colon"])
def test_invalid_run_name(api: TestClient, run: str) -> None:
    r = api.post(f"/v1/runs/{run}/samples", json=ok_batch(1))
    assert r.status_code in (404, 422)
    if r.status_code == 422:
        assert fields(r) == ["path.run"]


def test_unknown_field_is_rejected(api: TestClient) -> None:
    body = ok_batch(1)
    body["samples"][0]["completoin"] = "typo"
    r = api.post("/v1/runs/r/samples", json=body)
    assert r.status_code == 422 and "body.samples.0.completoin" in fields(r)


def test_nul_bytes_and_negative_step(api: TestClient) -> None:
    r = api.post("/v1/runs/r/samples", json=ok_batch(1, step=-5))
    assert r.status_code == 422 and "body.step" in fields(r)
    body = ok_batch(1)
    body["samples"][0]["completion"] = "a\x00b"
    r = api.post("/v1/runs/r/samples", json=body)
    assert r.status_code == 422 and "NUL" in r.json()["detail"][0]["msg"]


def test_body_over_cap_is_refused_unread(settings: Settings) -> None:
    small = settings.model_copy(update={"max_body_bytes": 4096})
    with TestClient(create_app(small)) as api:
        big = json.dumps(ok_batch(100)).encode()
        assert len(big) > 4096
        r = api.post("/v1/runs/r/samples", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and "4096" in r.json()["detail"]
        assert api.post("/v1/runs/r/samples", json=ok_batch(1)).status_code == 202


def test_service_keeps_serving_after_bad_requests(api: TestClient, settings: Settings) -> None:
    for bad in (b"\xff\xfe", b"[]", b"null", b'{"step": 1e400, "samples": []}', b"{" * 10000):
        r = api.post("/v1/runs/r/samples", content=bad, headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500, (bad[:20], r.status_code)
    assert api.post("/v1/runs/r/samples", json=ok_batch(2)).status_code == 202
    assert api.get("/healthz").json()["status"] == "ok"
    assert stream_len(settings) == 2


def test_metrics_and_reads(api: TestClient) -> None:
    assert api.post("/v1/runs/m-run/metrics", json={"step": 5, "values": {"loss": 0.5}}).status_code == 202
    r = api.post("/v1/runs/m-run/metrics", json={"step": 5, "values": {"loss": "high"}})
    assert r.status_code == 422 and "body.values.loss" in fields(r)
    assert api.get("/v1/runs/m-run/metrics").json()["metrics"]["train.loss"][0]["mean"] == 0.5
    assert api.get("/v1/runs/nope/steps/1").status_code == 404
    assert api.get("/v1/runs/m-run/alerts").json() == {"alerts": []}
    assert api.get("/v1/runs/m-run/steps/1", params={"limit": 0}).status_code == 422


def test_redis_down_answers_503(settings: Settings) -> None:
    down = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    with TestClient(create_app(down)) as api:
        r = api.post("/v1/runs/r/samples", json=ok_batch(1))
        assert r.status_code == 503 and r.headers["retry-after"]
        assert api.get("/healthz").status_code == 503
