"""What a client sends cannot stop scoring: strings the store cannot keep are refused at the
door (422 naming the field), and NaN metrics are kept as NaN and raise an alert.

Real API in-process (ASGI), real Redis, real SQLite and PostgreSQL stores, real worker.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import BaseModel

from judgeserve import JudgeClient, read
from judgeserve.alerts import AlertEngine, default_rules
from judgeserve.app import create_app
from judgeserve.detectors.length import LengthScorer
from judgeserve.schema import WireModel
from judgeserve.settings import Settings
from judgeserve.store import Store
from judgeserve.worker import Worker

from .conftest import LiveServer

SURROGATE = "\ud800"
NUL = "a\x00b"


@pytest.fixture
def api(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def any_db_api(settings: Settings, database_url: str) -> Iterator[TestClient]:
    """The API on SQLite and on PostgreSQL (each treats NaN its own way)."""
    s = settings.model_copy(update={"database_url": database_url})
    with TestClient(create_app(s)) as client:
        yield client


def post(api: TestClient, path: str, body: Any) -> Any:
    # json.dumps escapes a lone surrogate as \\ud800, as any client's JSON encoder may.
    return api.post(path, content=json.dumps(body), headers={"content-type": "application/json"})


def ok_sample(**over: Any) -> dict[str, Any]:
    return {"id": "s0", "prompt": "p", "completion": "c", **over}


def batch(sample: dict[str, Any] | None = None, **over: Any) -> dict[str, Any]:
    return {"step": 1, "samples": [sample or ok_sample()], **over}


# Every string a request can carry, each with the location its 422 must name.
BAD_PLACES: list[tuple[str, Callable[[str], dict[str, Any]], str]] = [
    ("prompt", lambda t: batch(ok_sample(prompt=t)), "body.samples.0.prompt"),
    ("completion", lambda t: batch(ok_sample(completion=t)), "body.samples.0.completion"),
    ("reference", lambda t: batch(ok_sample(reference=t)), "body.samples.0.reference"),
    ("probe_id", lambda t: batch(ok_sample(probe_id=t)), "body.samples.0.probe_id"),
    ("tag value", lambda t: batch(ok_sample(tags={"k": t})), "body.samples.0.tags"),
    ("tag key", lambda t: batch(ok_sample(tags={t: "v"})), "body.samples.0.tags"),
    ("checkpoint", lambda t: batch(checkpoint=t), "body.checkpoint"),
    ("rubrics", lambda t: batch(rubrics=[t]), "body.rubrics"),
]


@pytest.mark.parametrize("text", [SURROGATE, f"ok {SURROGATE} then", NUL], ids=["surrogate", "surrogate-inside", "nul"])
@pytest.mark.parametrize(("where", "make", "loc"), BAD_PLACES, ids=[p[0] for p in BAD_PLACES])
def test_unstorable_text_is_refused_naming_the_field(
    api: TestClient, where: str, make: Callable[[str], dict[str, Any]], loc: str, text: str
) -> None:
    r = post(api, "/v1/runs/r/samples", make(text))
    assert r.status_code == 422, (where, r.status_code, r.text[:200])
    locs = [".".join(str(p) for p in e["loc"]) for e in r.json()["detail"]]
    assert any(x.startswith(loc) for x in locs), (where, locs)
    assert api.post("/v1/runs/r/samples", json=batch()).status_code == 202


@pytest.mark.parametrize("text", [SURROGATE, NUL], ids=["surrogate", "nul"])
def test_metric_names_are_checked_too(api: TestClient, text: str) -> None:
    r = post(api, "/v1/runs/r/metrics", {"step": 1, "values": {f"lo{text}ss": 1.0}})
    assert r.status_code == 422
    assert all(e["loc"][:2] == ["body", "values"] for e in r.json()["detail"])
    r.json()  # the 422 itself encodes (the key it names is escaped, not echoed raw)


def test_every_request_model_refuses_unstorable_text(settings: Settings) -> None:
    """New routes are covered without a new test: every model a route reads from a body
    must be a WireModel (strings checked at any depth, dict keys too)."""
    app = create_app(settings)
    bodies: list[type[BaseModel]] = []
    for route in app.routes:
        if isinstance(route, APIRoute):
            for param in route.dependant.body_params:
                annotation = param.field_info.annotation
                if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                    bodies.append(annotation)
    assert bodies, "no route reads a JSON body?"
    for model in bodies:
        assert issubclass(model, WireModel), f"{model.__name__} does not check its strings"


# -- non-finite metrics -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "kind"),
    [(b"NaN", "nan"), (b"Infinity", "inf"), (b"-Infinity", "-inf"), (b'"nan"', "nan"),
     (b'"-inf"', "-inf"), (b"null", "nan")],
)
def test_nonfinite_metrics_are_kept_as_such(any_db_api: TestClient, raw: bytes, kind: str) -> None:
    api = any_db_api
    body = b'{"step": 3, "values": {"loss": ' + raw + b', "lr": 0.001}}'
    r = api.post("/v1/runs/nan-run/metrics", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 202, r.text
    series = api.get("/v1/runs/nan-run/metrics").json()["metrics"]
    assert series["train.loss"] == [
        {"step": 3, "mean": None, "ci_low": None, "ci_high": None, "n": 1, "nonfinite": kind}
    ]
    assert series["train.lr"][0]["mean"] == 0.001 and "nonfinite" not in series["train.lr"][0]
    # A later finite value at the same step replaces it, flag and all.
    assert api.post("/v1/runs/nan-run/metrics", json={"step": 3, "values": {"loss": 2.5}}).status_code == 202
    point = api.get("/v1/runs/nan-run/metrics").json()["metrics"]["train.loss"][0]
    assert point["mean"] == 2.5 and "nonfinite" not in point


def test_run_page_says_the_loss_was_nan(api: TestClient) -> None:
    api.post("/v1/runs/page-run/metrics", json={"step": 7, "values": {"loss": 1.0}})
    api.post("/v1/runs/page-run/metrics", content=b'{"step": 8, "values": {"loss": NaN}}',
             headers={"content-type": "application/json"})
    html = api.get("/runs/page-run").text
    assert "<code>train.loss</code> was <b>NaN</b> at step 8" in html


def test_nan_loss_from_the_sdk_raises_an_alert(
    settings: Settings, make_worker: Callable[..., Worker]
) -> None:
    """The SDK sends NaN, the API keeps it, the worker's default rules say so."""
    api = LiveServer(settings).start()
    try:
        with JudgeClient(api.url, run="diverged", spool_dir=settings.spool_dir) as client:
            client.log_metrics(10, loss=2.0)
            client.log_metrics(20, loss=1.5)
            client.submit(20, [{"id": f"a{i}", "prompt": "p", "completion": "fine"} for i in range(4)],
                          expected=4)
            client.log_metrics(30, loss=math.nan)
            client.log_metrics(35, loss=math.inf)
            client.log_metrics(40, loss=1.2)
            client.submit(40, [{"id": f"b{i}", "prompt": "p", "completion": "fine"} for i in range(4)],
                          expected=4)
            assert client.flush(timeout=30)
            assert client.errors == []
    finally:
        api.stop()
    store = Store(settings.database_url)
    worker = make_worker(store=store, scorers=[LengthScorer()], hooks=[AlertEngine(default_rules())])
    worker.run(idle_exit_s=0.5)
    alerts = read.list_alerts(store, "diverged", None, 10, 0)
    fired = [a for a in alerts if a.rule == "loss_not_finite"]
    assert len(fired) == 1, [a.message for a in alerts]
    assert fired[0].step == 40 and fired[0].severity == "critical"
    assert fired[0].message.startswith("train.loss is NaN at step 30 (and at 1 later steps)")
    # The finite losses still make an ordinary series for the other rules.
    series = read.metric_series(store, "diverged")["train.loss"]
    assert [(p["step"], p["mean"], p.get("nonfinite")) for p in series] == [
        (10, 2.0, None), (20, 1.5, None), (30, None, "nan"), (35, None, "inf"), (40, 1.2, None)
    ]
    store.close()
