"""The web view in-process (ASGI TestClient): status codes, escaping, sorting, filters, paging."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient

from judgeserve.app import create_app
from judgeserve.schema import Aggregate, Alert, Sample, Score
from judgeserve.settings import Settings
from judgeserve.store import Store
from judgeserve.web import live, require_viewer
from judgeserve.web.templating import CSP
from judgeserve.web.views import rubrics as rubrics_view

TEMPLATES = Path(__file__).resolve().parents[2] / "judgeserve" / "web" / "templates"
EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)>'
EVIL_ID = 'e"><img/src=x/onerror=alert(1)>'


def _seed(store: Store, run: str = "r1", steps: tuple[int, ...] = (10, 20), per_step: int = 4) -> None:
    with store.begin() as conn:
        store.upsert_run(conn, run, max(steps), ["helpfulness"])
        for step in steps:
            items = [
                Sample(run=run, step=step, id=f"s{step}-{i}", prompt=f"prompt {i}",
                       completion=f"answer {i} at {step} " + "again " * i, probe_id=f"p{i}",
                       checkpoint=f"c{step}")
                for i in range(per_step)
            ]
            store.save_samples(conn, items)
            for i, s in enumerate(items):
                text = s.completion
                store.save_scores(conn, run, step, s.id, [
                    Score(scorer="length.tokens", value=float(len(text.split()))),
                    Score(scorer="repetition.loop", value=i == 3,
                          details={"spans": [[text.index("again"), len(text) - 1]]} if i == 3 else {}),
                    Score(scorer="memorization.memorized", value=i == 2,
                          details={"start": 0, "end": 6} if i == 2 else {}),
                ])
            store.save_aggregates(conn, run, step, {
                "length.tokens": Aggregate(mean=4.0 + step / 10, ci_low=3.0, ci_high=6.0, n=per_step),
                "repetition.loop": Aggregate(mean=0.25, ci_low=0.0, ci_high=0.75, n=per_step),
                "diversity.distinct2": Aggregate(mean=0.5, ci_low=None, ci_high=None, n=per_step),
            })
    store.save_metrics(run, 0, {"loss": 2.0})
    store.save_metrics(run, 10, {"loss": 1.0})


def test_pages_answer_with_html_and_security_headers(client: TestClient, store: Store) -> None:
    _seed(store)
    store.add_alert(Alert(run="r1", step=20, rule="loop_rate", message="m",
                          evidence={"sample_ids": ["s20-3"]}))
    for url in ("/", "/runs/r1", "/runs/r1/steps/20", "/runs/r1/samples/s20-3", "/alerts",
                "/alerts?state=resolved", "/alerts?state=all&run=r1", "/rubrics"):
        r = client.get(url)
        assert r.status_code == 200, (url, r.text[:300])
        assert r.headers["content-type"].startswith("text/html")
        assert r.headers["content-security-policy"] == CSP
        assert "<script>" not in r.text  # every script is a static file
    for url in ("/runs/nope", "/runs/r1/steps/999", "/runs/r1/samples/nope", "/runs/nope/steps/1"):
        r = client.get(url)
        assert r.status_code == 404 and "Not found" in r.text, url
    assert client.get("/runs/bad name!").status_code in (404, 422)
    assert client.get("/alerts?state=bogus").status_code == 422
    assert client.get("/static/uPlot.iife.min.js").status_code == 200
    assert client.get("/static/uPlot.LICENSE").text.startswith("The MIT License")


def test_every_user_string_is_escaped(client: TestClient, store: Store) -> None:
    with store.begin() as conn:
        store.upsert_run(conn, "x", 1)
        store.save_samples(conn, [Sample(run="x", step=1, id=EVIL_ID, prompt=EVIL, completion=EVIL,
                                         reference=EVIL, probe_id=EVIL, tags={EVIL: EVIL})])
        store.save_scores(conn, "x", 1, EVIL_ID, [
            Score(scorer="repetition.loop", value=True, details={"spans": [[0, 8]], "note": EVIL}),
            Score(scorer="judge.h.c", value=2.0, details={"rationale": EVIL,
                                                          "distribution": {EVIL: 1.0}}),
        ])
        store.save_aggregates(conn, "x", 1, {"length.tokens": Aggregate(mean=1, ci_low=1, ci_high=1, n=1)})
    store.add_alert(Alert(run="x", step=1, rule=EVIL, message=EVIL, evidence={"sample_ids": [EVIL_ID], EVIL: EVIL}))
    pages = ["/", "/runs/x", "/runs/x/steps/1", f"/runs/x/samples/{quote(EVIL_ID, safe='')}",
             "/alerts", f"/runs/x/steps/1?probe={quote(EVIL)}"]
    for url in pages:
        r = client.get(url)
        assert r.status_code == 200, url
        assert "<script>alert" not in r.text and "<img src=x" not in r.text, url
        assert "<img/src" not in r.text, url
    sample = client.get(f"/runs/x/samples/{quote(EVIL_ID, safe='')}").text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in sample
    # The highlight cuts the text; each piece is still escaped.
    assert '<mark class="hl hl-repetition" title="repetition.loop">&lt;script&gt;</mark>' in sample


def test_no_template_marks_anything_safe() -> None:
    for path in TEMPLATES.glob("*.html"):
        text = path.read_text()
        assert "|safe" not in text.replace(" ", ""), path.name
        assert "autoescape false" not in text, path.name
        assert "Markup" not in text, path.name


def test_step_page_sorts_filters_and_pages(client: TestClient, store: Store) -> None:
    _seed(store, steps=(5,), per_step=120)

    def ids(url: str) -> list[str]:
        return re.findall(r'<tr class="[^"]*" data-sample="([^"]+)">', client.get(url).text)

    first = ids("/runs/r1/steps/5?sort=length.tokens&order=desc")
    assert len(first) == 50 and first[0] == "s5-119"
    asc = ids("/runs/r1/steps/5?sort=length.tokens&order=asc")
    assert asc[0] == "s5-0"
    assert len(ids("/runs/r1/steps/5?page=3")) == 20
    assert ids("/runs/r1/steps/5?page=4") == []
    assert ids("/runs/r1/steps/5?flagged=1") == ["s5-2", "s5-3"]
    assert ids("/runs/r1/steps/5?detector=repetition") == ["s5-3"]
    assert ids("/runs/r1/steps/5?detector=memorization.memorized") == ["s5-2"]
    assert ids("/runs/r1/steps/5?probe=p7") == ["s5-7"]
    # An unknown sort key or detector is ignored rather than trusted.
    assert len(ids("/runs/r1/steps/5?sort=nope&detector=nope")) == 50
    page = client.get("/runs/r1/steps/5?flagged=1").text
    assert "2 of 120 samples" in page


def test_run_page_steps_paging_and_charts_json(client: TestClient, store: Store) -> None:
    _seed(store, steps=tuple(range(0, 60)), per_step=1)
    page1 = client.get("/runs/r1").text
    steps = re.findall(r'<tr data-step="(\d+)"[^>]*>', page1)
    assert len(steps) == 50 and steps[0] == "59"
    assert 'rel="next"' in page1
    assert re.findall(r'<tr data-step="(\d+)"[^>]*>', client.get("/runs/r1?page=2").text)[-1] == "0"
    data = client.get("/runs/r1/charts.json").json()
    families = {f["name"]: f for f in data["families"]}
    assert list(families) == ["repetition", "diversity", "length"]
    length = families["length"]["metrics"][0]
    assert length["steps"] == list(range(60))
    assert [length[k][1] for k in ("mean", "lo", "hi")] == [4.1, 3.0, 6.0]
    assert data["train"] == [{"name": "train.loss", "steps": [0, 10], "value": [2.0, 1.0],
                              "hidden": False}]
    later = client.get("/runs/r1/charts.json?from_step=58").json()
    assert later["families"][0]["metrics"][0]["steps"] == [58, 59]
    assert client.get("/runs/nope/charts.json").status_code == 404
    goto = client.get("/runs/r1/goto?step=1000", follow_redirects=False)
    assert goto.status_code == 303 and goto.headers["location"] == "/runs/r1/steps/59"


def test_sample_page_highlights_judges_and_diffs(client: TestClient, store: Store) -> None:
    _seed(store)
    with store.begin() as conn:
        store.save_scores(conn, "r1", 20, "s20-3", [Score(
            scorer="judge.helpfulness.clarity", value=3.5,
            details={"distribution": {"3": 0.5, "4": 0.5, "bad": "x"}, "rationale": "Fine."})])
    html = client.get("/runs/r1/samples/s20-3").text
    assert '<mark class="hl hl-repetition" title="repetition.loop">again again again</mark>' in html
    assert html.count("<meter") == 2 and "Fine." in html
    assert "Same probe at step" in html and "s10-3" in html
    assert "<ins>" in html and "<del>" in html
    memorized = client.get("/runs/r1/samples/s20-2").text
    assert '<mark class="hl hl-memorization" title="memorization.memorized">answer</mark>' in memorized
    first = client.get("/runs/r1/samples/s10-1").text
    assert "No earlier completion of probe p1" in first


def test_alerts_page_resolves(client: TestClient, store: Store) -> None:
    _seed(store)
    a = store.add_alert(Alert(run="r1", step=20, rule="loop_rate", severity="critical", message="m",
                              evidence={"sample_ids": ["s20-3", "s20/odd?id#x"]}))
    html = client.get("/alerts").text
    assert 'href="/runs/r1/samples/s20-3"' in html
    assert 'href="/runs/r1/samples/s20%2Fodd%3Fid%23x"' in html
    r = client.post(f"/alerts/{a}/resolve?state=open", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/alerts?state=open"
    assert f'data-alert="{a}"' not in client.get("/alerts").text
    assert f'data-alert="{a}"' in client.get("/alerts?state=resolved").text
    again = client.post(f"/alerts/{a}/resolve", headers={"Accept": "application/json"})
    assert again.status_code == 404
    b = store.add_alert(Alert(run="r1", step=20, rule="other", message="m"))
    assert client.post(f"/alerts/{b}/resolve", headers={"Accept": "application/json"}).json() == {
        "id": b, "state": "resolved"}


def test_sample_ids_with_slashes_route(client: TestClient, store: Store) -> None:
    with store.begin() as conn:
        store.upsert_run(conn, "r2", 1)
        store.save_samples(conn, [Sample(run="r2", step=1, id="a/b?c#d%e", prompt="p", completion="c")])
    r = client.get(f"/runs/r2/samples/{quote('a/b?c#d%e', safe='')}")
    assert r.status_code == 200 and "a/b?c#d%e" in r.text


def test_runs_page_shows_alerts_and_sparkline(client: TestClient, store: Store) -> None:
    assert "No runs yet" in client.get("/").text
    _seed(store, steps=(1, 2, 3), per_step=1)
    store.add_alert(Alert(run="r1", step=3, rule="a", severity="info", message="m"))
    store.add_alert(Alert(run="r1", step=3, rule="b", severity="critical", message="m"))
    html = client.get("/").text
    assert 'href="/alerts?run=r1">2</a> <span class="sev sev-critical">' in html
    assert re.search(r'<polyline points="[0-9., ]+"/>', html)
    assert "repetition.loop" in html  # the headline metric when there is no judge


def test_rubrics_page(
    client: TestClient, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "none"
    monkeypatch.setattr(rubrics_view, "rubric_dirs", lambda _settings: [empty])
    assert "No rubric files found" in client.get("/rubrics").text
    d = tmp_path / "rubrics"
    d.mkdir()
    (d / "good.yaml").write_text(
        "name: good\nversion: 2\ndescription: Answer well.\n"
        "scale: {levels: {1: bad, 5: great}}\ncriteria:\n  - name: clarity\n    description: Is it <clear>?\n"
    )
    (d / "broken.yaml").write_text("name: broken\nversion: 1\ncriteria: []\nlevles: 3\n")
    store.save_calibration({
        "rubric": "good", "rubric_version": "1", "judge_backend": "toy", "judge_model": "m",
        "source": "stored labels (12 items)", "n": 12, "created": "2024-01-01T00:00:00Z",
        "criteria": {"clarity": {"spearman": 0.81}}})
    monkeypatch.setattr(rubrics_view, "rubric_dirs", lambda _settings: [d])
    html = client.get("/rubrics").text
    assert "judge.good.clarity" in html and "Is it &lt;clear&gt;?" in html
    assert "broken.yaml" in html and "levles" in html  # the loader's error, shown
    assert "spearman <b>0.81</b>" in html and "measured version 1, not this one" in html


def test_rubrics_page_redacts_secrets(client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "rubrics"
    d.mkdir()
    (d / "hosted.yaml").write_text(
        "name: hosted\nversion: 1\ndescription: Answer well.\n"
        "scale: {levels: {1: bad, 5: great}}\ncriteria:\n  - name: clarity\n    description: Clear?\n"
        "judge:\n  backend: openai\n  model: gpt-x\n  url: https://me:pw-SECRET-0@llm.example.com/v1\n"
        "  options:\n    api_key: sk-SECRET-1\n    headers: {Authorization: Bearer SECRET-2}\n"
        "    client_secret: |\n      SECRET-3\n    max_tokens: 64\n"
    )
    (d / "unparsed.yaml").write_text("judge: {options: {token: SECRET-4}\nname: [\n")
    monkeypatch.setattr(rubrics_view, "rubric_dirs", lambda _settings: [d])
    html = client.get("/rubrics").text
    assert "hosted.yaml" in html and "unparsed.yaml" in html
    assert "SECRET" not in html
    assert html.count("&lt;redacted&gt;") >= 5 and "max_tokens: 64" in html


def test_rubric_dirs_default_to_configured_then_builtin(settings: Settings) -> None:
    dirs = rubrics_view.rubric_dirs(settings)
    assert dirs and len({p.resolve() for p in dirs}) == len(dirs)


def test_require_viewer_guards_every_page(settings: Settings, store: Store) -> None:
    _seed(store)
    app = create_app(settings, store=store)

    def deny() -> None:
        raise HTTPException(401, "token required")

    app.dependency_overrides[require_viewer] = deny
    with TestClient(app) as c:
        for url in ("/", "/runs/r1", "/runs/r1/steps/10", "/runs/r1/samples/s10-1", "/alerts",
                    "/rubrics", "/live", "/runs/r1/charts.json", "/runs/r1/goto?step=1",
                    "/rubrics/helpfulness", "/rubrics/helpfulness/label"):
            assert c.get(url).status_code == 401, url
        assert c.post("/alerts/1/resolve").status_code == 401
        assert c.post("/rubrics/helpfulness/label").status_code == 401
        assert c.post("/rubrics/helpfulness/label/undo").status_code == 401
        assert c.get("/static/app.css").status_code == 200


def test_live_stream_reports_changes(client: TestClient, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    _seed(store)
    monkeypatch.setattr(live, "POLL_S", 0.05)
    monkeypatch.setattr(live, "MAX_STREAM_S", 0.3)
    quiet = client.get("/live?run=r1").text
    assert quiet.startswith("retry: 1000") and "event: hello" in quiet and "event: step" not in quiet
    store.add_alert(Alert(run="r1", step=20, rule="loop_rate", message="m"))
    # A page rendered before the alert passes its stamp: the stream catches it up at once.
    body = client.get("/live", params={"run": "r1", "since": "stale|0|0"}).text
    assert "event: step" in body and "event: alert" in body
    data = json.loads(body.split("event: alert\n", 1)[1].split("data: ", 1)[1].split("\n", 1)[0])
    assert [a["rule"] for a in data["alerts"]] == ["loop_rate"]
    assert client.get("/live?run=bad name").status_code == 422


def test_changes_between_stamps() -> None:
    assert live.changes("a|1|1", "a|1|1") == []
    assert live.changes("a|1|1", "b|1|1") == ["step"]
    assert live.changes("a|1|1", "a|2|2") == ["alert"]
    assert live.changes("a|2|2", "a|2|1") == ["alerts"]
    assert live.changes("junk", "a|0|0") == ["step"]


def test_pages_on_each_database(settings: Settings, database_url: str) -> None:
    """The view's queries on SQLite and PostgreSQL: sorting with NULLs, flags, group-bys."""
    s = settings.model_copy(update={"database_url": database_url})
    store = Store(database_url)
    try:
        _seed(store, steps=(1, 2), per_step=5)
        store.add_alert(Alert(run="r1", step=2, rule="x", message="m", evidence={"sample_ids": ["s2-3"]}))
        with TestClient(create_app(s, store=store)) as c:
            for url in ("/", "/runs/r1", "/runs/r1/steps/2?sort=length.tokens&order=asc",
                        "/runs/r1/steps/2?sort=probe&flagged=1", "/runs/r1/steps/2?detector=repetition",
                        "/runs/r1/samples/s2-3", "/alerts?state=all&run=r1", "/runs/r1/charts.json",
                        "/runs/r1/goto?step=3"):
                r = c.get(url)
                assert r.status_code == 200, (url, r.text[:500])
            flagged = c.get("/runs/r1/steps/2?flagged=1").text
            assert re.findall(r'data-sample="([^"]+)"', flagged) == ["s2-2", "s2-3"]
    finally:
        store.close()


def test_dead_letters_page_shows_and_requeues(settings: Settings) -> None:
    from judgeserve.detectors.length import LengthScorer
    from judgeserve.stream import Queue
    from judgeserve.worker import Worker

    from ..plugins import PoisonScorer

    s = settings.model_copy(update={"max_deliveries": 1})
    worker = Worker(s, scorers=[PoisonScorer(), LengthScorer()], hooks=())
    try:
        worker.queue.add([{"run": "dl-run", "step": 4, "id": "bad<b>1</b>", "prompt": "", "completion": "POISON"}])
        worker.process(worker.queue.read(10, block_ms=100))
        with TestClient(create_app(s)) as c:
            page = c.get("/deadletter")
            assert page.status_code == 200
            assert "bad&lt;b&gt;1&lt;/b&gt;" in page.text and "cannot score" in page.text
            assert "poison" in page.text  # the scorer that failed
            entry = Queue(s.redis_url, prefix=s.stream_prefix).deadletters()[0]["id"]
            r = c.post(f"/deadletter/{entry}/requeue", follow_redirects=False)
            assert r.status_code == 303
            assert "No dead letters." in c.get("/deadletter").text
        assert worker.queue.backlog() == 1
    finally:
        worker.close()


def test_dead_letter_reads_leave_the_consumer_group_to_the_workers(settings: Settings) -> None:
    """The API's dead-letter routes use the app's one stream client: no XGROUP CREATE (which
    would make the stream) at start-up nor per request."""
    import redis

    with TestClient(create_app(settings)) as c:
        assert c.get("/deadletter").status_code == 200
        assert c.get("/v1/deadletter").json() == {"deadletters": [], "checkpoints": []}
        assert c.post("/deadletter/1-1/requeue", follow_redirects=False).status_code == 404
        assert c.post("/deadletter/checkpoints/1-1/requeue", follow_redirects=False).status_code == 404
    r = redis.Redis.from_url(settings.redis_url)
    try:
        assert not r.exists(f"{settings.stream_prefix}:samples")
        assert not r.exists(f"{settings.stream_prefix}:checkpoints")
    finally:
        r.close()
