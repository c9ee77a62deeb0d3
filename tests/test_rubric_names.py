"""A run's rubrics are names looked up in the rubric directories: an unknown, invalid or
path-like one is refused at the API (422 naming it and why), never accepted and then
skipped in a worker's log; the run page and the API say which rubrics judge a run."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from judgeserve import JudgeClient
from judgeserve.app import create_app
from judgeserve.exceptions import ClientError, ConfigError
from judgeserve.judge.rubric import RubricCatalog, rubric_by_name
from judgeserve.judge.scorer import JudgeScorer
from judgeserve.settings import Settings
from judgeserve.testing.toy_judge import TOY_RUBRIC
from judgeserve.worker import Worker


@pytest.fixture
def rubric_dir(tmp_path: Path) -> Path:
    d = tmp_path / "rubrics"
    d.mkdir()
    (d / "toy.yaml").write_text(TOY_RUBRIC)
    # A typo'd key: the rubric exists but is invalid.
    (d / "broken.yaml").write_text(TOY_RUBRIC.replace("name: toy", "name: broken").replace("reference:", "refrence:"))
    return d


@pytest.fixture
def rubric_settings(settings: Settings, rubric_dir: Path) -> Settings:
    return settings.model_copy(update={"rubric_dir": rubric_dir})


@pytest.fixture
def api(rubric_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(rubric_settings)) as client:
        yield client


def batch(**over: object) -> dict[str, object]:
    body: dict[str, object] = {"step": 1, "samples": [{"id": "s0", "prompt": "p", "completion": "c"}]}
    body.update(over)
    return body


def queued(settings: Settings) -> int:
    return int(redis.Redis.from_url(settings.redis_url).xlen(f"{settings.stream_prefix}:samples"))


def test_known_rubrics_are_accepted(api: TestClient, rubric_settings: Settings) -> None:
    r = api.post("/v1/runs/r/samples", json=batch(rubrics=["toy", "helpfulness"]))
    assert r.status_code == 202, r.text
    assert queued(rubric_settings) == 1


def test_unknown_rubric_is_refused_naming_it(api: TestClient, rubric_settings: Settings) -> None:
    r = api.post("/v1/runs/r/samples", json=batch(rubrics=["toy", "helpfulnes"]))
    assert r.status_code == 422
    [err] = r.json()["detail"]
    assert err["loc"] == ["body", "rubrics", 1]
    assert "'helpfulnes'" in err["msg"] and "no rubric named" in err["msg"]
    assert queued(rubric_settings) == 0


def test_invalid_rubric_is_refused_with_the_lint_error(api: TestClient, rubric_settings: Settings) -> None:
    r = api.post("/v1/runs/r/samples", json=batch(rubrics=["broken"]))
    assert r.status_code == 422
    [err] = r.json()["detail"]
    assert err["loc"] == ["body", "rubrics", 0]
    assert "broken.yaml:4: refrence: Extra inputs are not permitted" in err["msg"]
    assert queued(rubric_settings) == 0


@pytest.mark.parametrize("name", ["/dev/zero", "../rubrics/toy", "rubrics/toy.yaml", "Toy", ""])
def test_a_path_is_never_a_rubric(api: TestClient, name: str, rubric_settings: Settings) -> None:
    r = api.post("/v1/runs/r/samples", json=batch(rubrics=[name]))
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"][:3] == ["body", "rubrics", 0]
    assert "not a rubric name" in r.json()["detail"][0]["msg"]
    assert queued(rubric_settings) == 0


def test_a_samples_rubrics_tag_is_checked_too(api: TestClient, rubric_dir: Path) -> None:
    body = batch()
    body["samples"] = [
        {"id": "a", "prompt": "p", "completion": "c", "tags": {"rubrics": "toy"}},
        {"id": "b", "prompt": "p", "completion": "c", "tags": {"rubrics": f"toy, {rubric_dir / 'toy.yaml'}"}},
    ]
    r = api.post("/v1/runs/r/samples", json=body)
    assert r.status_code == 422
    [err] = r.json()["detail"]
    assert err["loc"] == ["body", "samples", 1, "tags", "rubrics"] and "not a rubric name" in err["msg"]


def test_a_fixed_rubric_is_seen_without_a_restart(api: TestClient, rubric_dir: Path) -> None:
    assert api.post("/v1/runs/r/samples", json=batch(rubrics=["broken"])).status_code == 422
    fixed = TOY_RUBRIC.replace("name: toy", "name: broken") + "sample_rate: 0.5\n"
    (rubric_dir / "broken.yaml").write_text(fixed)
    assert api.post("/v1/runs/r/samples", json=batch(rubrics=["broken"])).status_code == 202


def test_the_worker_never_reads_a_rubric_by_path(rubric_dir: Path) -> None:
    path = str(rubric_dir / "toy.yaml")
    with pytest.raises(ConfigError, match="not a rubric name"):
        rubric_by_name(path, [rubric_dir])
    with pytest.raises(ConfigError, match="not a rubric name"):
        rubric_by_name("/dev/zero")
    assert rubric_by_name("toy", [rubric_dir]).name == "toy"
    # The scorer, given a path by a sample's tag or a run, loads nothing.
    scorer = JudgeScorer(rubric_dirs=[rubric_dir])
    assert scorer._rubric(path) is None and scorer._rubric("/dev/zero") is None
    assert scorer._rubric("toy") is not None


def test_sdk_refuses_a_path_at_once(settings: Settings) -> None:
    with pytest.raises(ClientError, match="not a rubric name"):
        JudgeClient("http://127.0.0.1:9", run="r", rubrics=["/dev/zero"], spool_dir=settings.spool_dir)


def test_a_path_in_the_default_rubrics_is_a_bad_setting(settings: Settings) -> None:
    with pytest.raises(ValueError, match="not a rubric name"):
        Settings(judge_rubrics=["/etc/passwd"])


def test_catalog_reports_what_would_not_judge(rubric_dir: Path) -> None:
    catalog = RubricCatalog([rubric_dir])
    active = catalog.active(["toy", "broken", "nope"], ["helpfulness"], judge_url=None)
    assert active["named_by"] == "run"
    toy, broken, nope = active["rubrics"]
    assert toy["version"] == "1" and toy["criteria"] == ["marker"]
    assert "JUDGESERVE_JUDGE_URL" in toy["problem"]  # a `serve` judge with no endpoint
    assert "refrence" in broken["problem"] and "no rubric named 'nope'" in nope["problem"]
    ok = catalog.active(None, ["toy"], judge_url="http://127.0.0.1:8001/judge")
    assert ok["named_by"] == "server default" and ok["rubrics"][0]["problem"] is None
    assert catalog.active(None, [], None) == {"named_by": None, "rubrics": []}


def test_run_page_and_api_say_which_rubrics_judge_the_run(
    api: TestClient, rubric_settings: Settings, make_worker: Callable[..., Worker]
) -> None:
    assert api.post("/v1/runs/judged/samples", json=batch(rubrics=["toy"])).status_code == 202
    assert api.post("/v1/runs/plain/samples", json=batch()).status_code == 202
    worker = make_worker(settings=rubric_settings, scorers=[], hooks=())
    worker.run(idle_exit_s=0.5)
    judge = api.get("/v1/runs/judged").json()["judge"]
    assert judge["named_by"] == "run" and [r["name"] for r in judge["rubrics"]] == ["toy"]
    assert "JUDGESERVE_JUDGE_URL" in judge["rubrics"][0]["problem"]
    page = api.get("/runs/judged").text
    assert 'data-rubric="toy"' in page and "v1" in page
    assert "not judging: no judge endpoint" in page
    plain = api.get("/runs/plain").text
    assert "no rubric: the judge does not score this run" in plain
    assert api.get("/v1/runs/plain").json()["judge"] == {"named_by": None, "rubrics": []}
