"""Fuzz every route of the app with arbitrary JSON, unicode and numbers; then a normal
sample must still be scored, and everything the API accepted must have been stored and
scored (what the API accepts, the store must be able to keep).

The routes are enumerated from the app, so a new route is fuzzed without a new test.
Each gets path parameters, query strings and bodies drawn by hypothesis: any JSON
(lone surrogates, NUL, NaN and ±inf, integers past 64 bits, deep nesting), and valid
bodies built from the route's own schema with one leaf swapped for such a value, so the
fuzz reaches past the first check. Real API (in-process), real Redis, real SQLite, and a
real worker scoring what is accepted while the fuzz runs.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pydantic import BaseModel

from judgeserve import read
from judgeserve.app import create_app
from judgeserve.settings import Settings
from judgeserve.store import Store
from judgeserve.web import live
from judgeserve.worker import Worker

from .conftest import wait_for

CHEAP = ["diversity", "reference", "reference_lc", "judge", "memorization"]
EXAMPLES_PER_ROUTE = 30
EXAMPLES_PER_BODY_ROUTE = 150  # routes that take a JSON body: where text reaches the store

chars = st.one_of(st.characters(exclude_categories=()), st.characters(categories=["Cs"]))
nasty = st.sampled_from(
    ["\ud800", "a\x00b", "\udfff\ud800", "\U0001f4a5", "\u202e", "../../etc/passwd", "%00", "",
     " ", "\n", "NaN", "-inf", "1e400", "fz-run", "0", "-1", "s0", "x" * 300]
)
# Text around a lone surrogate or a NUL: valid JSON (\\ud800), no store can keep it.
poisoned = st.builds(
    lambda a, bad, b: a + bad + b,
    st.text(max_size=5), st.sampled_from(["\ud800", "\udfff", "\x00", "\udc00\ud800"]), st.text(max_size=5),
)
text = st.one_of(st.text(chars, max_size=20), nasty, poisoned)
# Over the 64 KiB text limit once encoded (bodies only: a URL that long is the client's error).
huge = st.sampled_from(["é" * 40_000, "y" * 70_000])
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 2**53, 2**63, 1e308]),
)
leaves = st.one_of(st.none(), st.booleans(), numbers, text, huge)
json_values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)


def example(schema: dict[str, Any], defs: dict[str, Any], optional: bool = False) -> Any:
    """A small instance of a JSON schema (the subset pydantic writes): valid when only the
    required properties are filled; ``optional`` fills the others too (their values may
    mean nothing to the server, e.g. a rubric named "text")."""
    if "$ref" in schema:
        return example(defs[schema["$ref"].split("/")[-1]], defs, optional)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return example(options[0], defs, optional)
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        wanted = list(props) if optional else schema.get("required", [])
        return {k: example(props[k], defs, optional) for k in wanted}
    if kind == "array":
        return [example(schema.get("items", {}), defs, optional)
                for _ in range(max(1, schema.get("minItems", 1)))]
    if kind == "integer":
        return max(1, schema.get("minimum", 1))
    if kind == "number":
        return 0.5
    if kind == "boolean":
        return True
    if "enum" in schema:
        return schema["enum"][0]
    return "s0" if schema.get("pattern") else "text"


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        value = value[p]
    return value


def leaf_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        found = [path]
        for k, v in value.items():
            found += leaf_paths(v, (*path, k))
        return found
    if isinstance(value, list):
        found = [path]
        for i, v in enumerate(value):
            found += leaf_paths(v, (*path, i))
        return found
    return [path]


@st.composite
def swapped(draw: st.DrawFn, valid: Any) -> Any:
    """``valid`` with one place (a leaf, a container, or a dict key) replaced."""
    value = json.loads(json.dumps(valid))
    # Hypothesis leans towards the first of its choices: the likelier ones come first.
    if draw(st.sampled_from(["swap", "swap", "swap", "as is"])) == "as is":
        return value  # valid bodies must get through, to reach the worker
    paths = leaf_paths(value)
    strings = [p for p in paths if p and isinstance(_at(value, p), str)]
    path = draw(st.sampled_from(strings * 2 + paths))  # text reaches the store: swap it more
    if not path:
        return draw(json_values)
    parent = value
    for p in path[:-1]:
        parent = parent[p]
    old = parent[path[-1]]
    # A string usually becomes another string (any unicode: often still valid, so it is
    # stored and scored); anything may become any JSON value.
    how = draw(st.sampled_from(["poisoned", "text", "any"])) if isinstance(old, str) else "any"
    new = draw({"poisoned": poisoned, "text": text, "any": json_values}[how])
    if isinstance(parent, dict) and draw(st.sampled_from(["value"] * 4 + ["key"])) == "key":
        parent[draw(text)] = parent.pop(path[-1])  # a bad key
    else:
        parent[path[-1]] = new
    return value


def body_model(route: APIRoute) -> type[BaseModel] | None:
    for param in route.dependant.body_params:
        annotation = param.field_info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return annotation
    return None


def query_names(dependant: Any) -> list[str]:
    """Query parameters of a route and of the dependencies it uses (auth, paging)."""
    names = [p.alias for p in dependant.query_params]
    for sub in dependant.dependencies:
        names += query_names(sub)
    return sorted(set(names))


VALID_PARAMS = {"run": "fz-run", "step": "1", "sample_id": "s0", "alert_id": "1", "entry_id": "1-1"}


def path_value() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(["fz-run", "1", "0", "s0", "1-1"]), text, numbers.map(str))


@st.composite
def requests_for(draw: st.DrawFn, route: APIRoute) -> dict[str, Any]:
    method = draw(st.sampled_from(sorted(route.methods - {"HEAD", "OPTIONS"})))
    names_in_path = re.findall(r"{(\w+)}", route.path_format)
    if not draw(st.booleans()):  # valid parameters, so the fuzz gets past the path into the body
        values = {n: VALID_PARAMS.get(n, "1") for n in names_in_path}
    else:
        values = {n: draw(path_value()) for n in names_in_path}
    params = {n: urllib.parse.quote(v.encode("utf-8", "surrogatepass"), safe="") for n, v in values.items()}
    url = route.path_format.format(**params)
    names = [*query_names(route.dependant), "x"]
    query = draw(st.dictionaries(st.sampled_from(names), st.one_of(text, numbers.map(str)), max_size=4))
    if query:
        url += "?" + urllib.parse.urlencode(
            {k: v.encode("utf-8", "surrogatepass") for k, v in query.items()}
        )
    out: dict[str, Any] = {"method": method, "url": url}
    if method in ("POST", "PUT", "PATCH"):
        model = body_model(route)
        kind = draw(st.sampled_from(["json", "json", "raw", "form"] if model is None else ["schema", "schema", "json", "raw"]))
        if kind == "schema" and model is not None:
            schema = model.model_json_schema()
            optional = draw(st.booleans())
            body = draw(swapped(example(schema, schema.get("$defs", {}), optional)))
            out["content"] = json.dumps(body)  # NaN as NaN, surrogates as \\ud800 escapes
        elif kind == "json":
            out["content"] = json.dumps(draw(json_values))
        elif kind == "form":
            form = draw(st.dictionaries(st.sampled_from(["token", "next", "x"]), text, max_size=3))
            out["content"] = urllib.parse.urlencode({k: v.encode("utf-8", "surrogatepass") for k, v in form.items()})
            out["headers"] = {"content-type": "application/x-www-form-urlencoded"}
        else:
            out["content"] = draw(st.binary(max_size=200))
        out.setdefault("headers", {"content-type": "application/json"})
    return out


def accepted_samples(req: dict[str, Any], resp: Any) -> list[tuple[str, str]]:
    """(run, sample id) of every sample a 202 from the samples route accepted."""
    if resp.status_code != 202 or "accepted" not in resp.json():
        return []
    run = resp.json()["run"]
    body = json.loads(req["content"])
    return [(run, s["id"]) for s in body["samples"]]


@pytest.fixture
def live_worker(settings: Settings) -> Iterator[Worker]:
    s = settings.model_copy(update={"disabled_scorers": CHEAP, "claim_idle_ms": 1000})
    worker = Worker(s)
    t = threading.Thread(target=worker.run, daemon=True)
    t.start()
    yield worker
    worker.stop()
    t.join(timeout=20)
    worker.close()


def fuzz_route(api: TestClient, route: APIRoute, accepted: set[tuple[str, str]], errors: list[str]) -> None:
    @given(req=requests_for(route))
    @hsettings(max_examples=EXAMPLES_PER_BODY_ROUTE if body_model(route) else EXAMPLES_PER_ROUTE,
               deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def fuzz(req: dict[str, Any]) -> None:
        resp = api.request(req["method"], req["url"], content=req.get("content"), headers=req.get("headers"))
        if resp.status_code >= 500:
            errors.append(f"{req['method']} {route.path} -> {resp.status_code}: {resp.text[:200]}")
        assert resp.status_code < 500, (req, resp.status_code, resp.text[:300])
        if route.path == "/v1/runs/{run}/samples":
            accepted.update(accepted_samples(req, resp))

    fuzz()


@pytest.mark.timeout(900)
def test_fuzz_every_route_then_a_normal_sample_is_scored(
    settings: Settings, live_worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "MAX_STREAM_S", 0.3)  # the event stream ends at once
    app = create_app(settings)
    routes = [r for r in app.routes if isinstance(r, APIRoute)]
    assert len(routes) >= 25, [r.path for r in routes]
    accepted: set[tuple[str, str]] = set()
    errors: list[str] = []
    with TestClient(app, raise_server_exceptions=False) as api:
        assert api.post("/v1/runs/fz-run/samples", json={"step": 1, "samples": [{"id": "seed", "prompt": "p", "completion": "c"}]}).status_code == 202
        accepted.add(("fz-run", "seed"))
        for route in routes:
            fuzz_route(api, route, accepted, errors)
        assert errors == []
        # A normal sample, after all that, is scored; and the worker never died.
        r = api.post("/v1/runs/after-fuzz/samples", json={"step": 3, "samples": [{"id": "ok", "prompt": "p", "completion": "a plain answer"}]})
        assert r.status_code == 202
        store = Store(settings.database_url)
        wait_for(lambda: read.count_scored(store, "after-fuzz") == 1, timeout=60)
        # Nothing accepted is lost: what the API took, the store can keep, so every accepted
        # sample ends scored (the cheap scorers do not fail), none dead-lettered.
        wait_for(lambda: live_worker.queue.backlog() == 0, timeout=120)
        assert live_worker.queue.deadletters(10_000) == []
        missing = [(run, sid) for run, sid in accepted if read.get_sample(store, run, sid) is None]
        assert missing == []
        assert len(accepted) > 1  # the fuzz did get samples through
        assert api.get("/healthz").json()["scoring"] == "ok"
        store.close()
