"""Labelling in the web view, in-process: the queue, a label's post, undo, pairwise order,
access, and the rubric page's agreement per judge version."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sklearn.metrics import cohen_kappa_score

from judgeserve import read
from judgeserve.agreement import nearest_level
from judgeserve.app import create_app
from judgeserve.auth import create_token
from judgeserve.judge.version import JudgeVersion
from judgeserve.label_queue import item_key, pair_order, rank
from judgeserve.schema import Sample, Score
from judgeserve.settings import Settings
from judgeserve.store import Store

from ..judged import judge_details, seed_judged

LABEL = "/rubrics/helpfulness/label"


def shown(html: str) -> tuple[str, str] | None:
    """The (run, sample) the label page shows, or None when the queue is empty."""
    m = re.search(r'id="item" class="label-item" data-run="([^"]+)" data-sample="([^"]+)"', html)
    return (m.group(1), m.group(2)) if m else None


def post(client: TestClient, run: str, sample: str, value: str, labeller: str = "ann",
         **extra: str) -> Any:
    data = {"run": run, "sample_id": sample, "criterion": "helpfulness", "value": value,
            "labeller": labeller, "skip": "", **extra}
    return client.post(LABEL, data=data, follow_redirects=False)


# -- the queue ----------------------------------------------------------------------------


def cand(run: str, sid: str, step: int, value: float | None, mass: float = 0.9,
         criterion: str = "c") -> dict[str, Any]:
    return {"run": run, "sample_id": sid, "step": step, "criterion": criterion, "value": value,
            "details": {"label_mass": mass}}


def test_queue_latest_checkpoint_first_then_strata_then_uncertainty() -> None:
    rows = [
        cand("a", "old", 10, 3.0, mass=0.1),  # very uncertain, but an older checkpoint
        cand("a", "a1", 20, 5.0, mass=0.9),
        cand("a", "a2", 20, 5.1, mass=0.5),  # same stratum (5), less sure: first of the 5s
        cand("a", "a3", 20, 1.2, mass=0.95),
        cand("b", "b1", 3, 3.0, mass=0.99),  # run b's latest checkpoint is step 3
    ]
    order = [i.sample_id for i in rank(rows, {"c": [1, 2, 3, 4, 5]})]
    assert order.index("old") == len(order) - 1  # every run's latest checkpoint first
    assert order[:3] == ["a3", "b1", "a2"]  # one of each verdict level in turn: 1, 3, 5
    assert order[3] == "a1"
    # Labelled and skipped items leave the queue; the stratum with fewest labels leads.
    later = rank(rows, {"c": [1, 2, 3, 4, 5]}, exclude={("a", "a3", "c")},
                 skip={item_key("b", "b1", "c")})
    assert [i.sample_id for i in later][:2] == ["a2", "a1"]


def test_queue_walks_round_the_verdicts_one_label_at_a_time() -> None:
    # Ranked afresh after every label, the queue still cycles through the judge's levels:
    # the level with the fewest of the labeller's labels comes first.
    rows = [cand("r", f"{v}-{k}", 1, float(v)) for v in (1, 3, 5) for k in range(3)]
    done: set[tuple[str, str, str]] = set()
    walked = []
    for _ in range(6):
        first = rank(rows, {"c": [1, 2, 3, 4, 5]}, exclude=done)[0]
        walked.append(first.stratum)
        done.add((first.run, first.sample_id, first.criterion))
    assert walked == ["1", "3", "5", "1", "3", "5"]


def test_queue_disagreement_between_criteria_and_unparseable_first() -> None:
    levels = {"x": [1, 2, 3, 4, 5], "y": [1, 2, 3, 4, 5]}
    rows = [
        cand("r", "agree", 1, 5.0, criterion="x"), cand("r", "agree", 1, 5.0, criterion="y"),
        cand("r", "split", 1, 5.0, criterion="x"), cand("r", "split", 1, 1.0, criterion="y"),
        cand("r", "broken", 1, None, criterion="x"),
    ]
    order = [(i.sample_id, i.criterion) for i in rank(rows, levels)]
    fives = [o for o in order if o[0] != "broken" and o != ("split", "y")]
    assert fives[0] == ("split", "x")  # the criteria disagree on it: ask a person first
    assert ("broken", "x") in order  # an unparseable verdict is asked about too


def test_pair_order_is_random_per_item_and_stable() -> None:
    orders = [pair_order("ann", "r", f"s{i}") for i in range(200)]
    assert orders == [pair_order("ann", "r", f"s{i}") for i in range(200)]
    assert 60 < orders.count("cb") < 140


# -- labelling through the page -------------------------------------------------------------


def test_label_undo_and_skip_through_forms(client: TestClient, store: Store) -> None:
    seed_judged(store, "r1", [10, 20], 5, lambda step, i: float(i + 1))
    page = client.get(LABEL, params={"labeller": "ann"})
    assert page.status_code == 200
    assert "toy-judge" not in page.text and "label_mass" not in page.text  # no verdict to sway
    first = shown(page.text)
    assert first is not None and first[1].startswith("r1-s20-")  # the latest checkpoint
    assert "Question" in page.text and "Reference" in page.text
    r = post(client, *first, "4")
    assert r.status_code == 303
    after = client.get(r.headers["location"])
    assert f"Saved 4 for {first[1]}" in after.text and shown(after.text) != first
    (label,) = read.labels_with_verdicts(store, "helpfulness")
    assert (label["sample_id"], label["value"], label["labeller"]) == (first[1], 4.0, "ann")
    # Relabelling the same item replaces the label: one per labeller and item.
    post(client, *first, "2")
    assert [r["value"] for r in read.labels_with_verdicts(store, "helpfulness")] == [2.0]
    # Undo takes it back and shows the item again.
    r = client.post(f"{LABEL}/undo", data={"labeller": "ann"}, follow_redirects=False)
    again = client.get(r.headers["location"])
    assert shown(again.text) == first and "took back the label" in again.text
    assert read.labels_with_verdicts(store, "helpfulness") == []
    nothing = client.post(f"{LABEL}/undo", data={"labeller": "ann"})
    assert "nothing to undo" in nothing.text
    # Skipping leaves an item for later in this session (the skip list rides in the URL).
    link = re.search(r'id="skip" href="([^"]+)"', again.text)
    assert link is not None
    skipped = client.get(link.group(1).replace("&amp;", "&"))
    assert shown(skipped.text) not in (None, first)
    # Another labeller has their own queue, and their own label of the same item.
    assert shown(client.get(LABEL, params={"labeller": "bo"}).text) == first
    post(client, *first, "5", labeller="bo")
    post(client, *first, "3", labeller="ann")
    assert sorted(r["labeller"] for r in read.labels_with_verdicts(store, "helpfulness")) == ["ann", "bo"]


def test_every_item_once_then_the_queue_is_empty(client: TestClient, store: Store) -> None:
    ids = seed_judged(store, "r1", [10], 4, lambda step, i: float(i + 1))
    seen = []
    for _ in range(len(ids)):
        item = shown(client.get(LABEL).text)
        assert item is not None
        seen.append(item[1])
        post(client, *item, "3", labeller="")
    assert sorted(seen) == sorted(ids)
    html = client.get(LABEL).text
    assert shown(html) is None and 'id="queue-empty"' in html


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"value": "7"}, "label must be one of the levels [1, 2, 3, 4, 5], not 7"),
        ({"value": "x"}, "label must be one of the levels"),
        ({"criterion": "nope"}, "has no criterion &#39;nope&#39;"),
        ({"sample_id": "missing"}, "sample_id: no sample &#39;missing&#39;"),
        ({"labeller": "a\x01b"}, "labeller: at most 64 characters"),
    ],
)
def test_a_bad_label_is_refused_naming_the_field(
    client: TestClient, store: Store, form: dict[str, str], message: str
) -> None:
    seed_judged(store, "r1", [10], 2, lambda step, i: 3.0)
    data = {"run": "r1", "sample_id": "r1-s10-0", "criterion": "helpfulness", "value": "3",
            "labeller": "ann", **form}
    r = client.post(LABEL, data=data)
    assert r.status_code == 422 and message in r.text
    assert read.labels_with_verdicts(store, "helpfulness") == []


def test_unknown_rubric_is_404(client: TestClient) -> None:
    assert client.get("/rubrics/no_such_rubric/label").status_code == 404
    assert client.get("/rubrics/no_such_rubric").status_code == 404
    assert client.get("/rubrics/..%2Fetc/label").status_code in (404, 422)


def test_pairwise_answers_in_random_order_mapped_back(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    rubrics = tmp_path / "rubrics"
    rubrics.mkdir()
    (rubrics / "duel.yaml").write_text(
        "name: duel\nversion: 1\ndescription: Answer.\nmode: pairwise\n"
        "criteria:\n  - name: better\n    description: Which answer is better?\n"
    )
    with store.begin() as conn:
        store.upsert_run(conn, "p", 2, ["duel"])
        for step in (1, 2):
            store.save_samples(conn, [
                Sample(run="p", step=step, id=f"s{step}-{i}", prompt=f"Q{i}",
                       completion=f"answer {i} of step {step}", probe_id=f"q{i}")
                for i in range(6)
            ])
        for i in range(6):
            store.save_scores(conn, "p", 2, f"s2-{i}", [Score(
                scorer="judge.duel.better", value=1.0,
                details={**judge_details(rubric="duel"), "outcome": "win", "consistent": i != 0},
            )])
    results: dict[str, str] = {}
    app = create_app(settings.model_copy(update={"rubric_dir": rubrics}), store=store)
    with TestClient(app) as client:
        for _ in range(6):
            html = client.get("/rubrics/duel/label", params={"labeller": "ann"}).text
            item = shown(html)
            assert item is not None
            order = pair_order("ann", *item)
            a = re.search(r'class="text answer-a">([^<]*)<', html)
            assert a is not None
            # The candidate (step 2) is A when the order is cb, else the baseline (step 1) is.
            assert ("of step 2" in a.group(1)) == (order == "cb")
            r = client.post("/rubrics/duel/label", data={
                "run": "p", "sample_id": item[1], "criterion": "better", "value": "a",
                "labeller": "ann", "order": order, "baseline_id": item[1].replace("s2-", "s1-")},
                follow_redirects=False)
            assert r.status_code == 303, r.text
            results[item[1]] = order
        for row in read.labels_with_verdicts(store, "duel"):
            # Choosing A is a win for the candidate exactly when the candidate was A.
            assert row["value"] == (1.0 if results[row["sample_id"]] == "cb" else 0.0)
            assert row["baseline_id"] == row["sample_id"].replace("s2-", "s1-")
            assert row["length"] is not None and row["baseline_length"] is not None
        assert len(set(results.values())) == 2  # both orders were shown
        page = client.get("/rubrics/duel").text
        assert re.search(r'data-metric="position_bias" data-value="0.1666', page)


# -- the rubric page ------------------------------------------------------------------------


def label_rows(store: Store, run: str, ids: list[str], human: list[int], labeller: str = "ann") -> None:
    store.save_labels([
        {"run": run, "sample_id": sid, "rubric": "helpfulness", "criterion": "helpfulness",
         "value": float(h), "labeller": labeller, "project": None, "rubric_version": "1"}
        for sid, h in zip(ids, human, strict=True)
    ])


def metric(html: str, version: str, name: str) -> tuple[float, float, float]:
    row = re.search(rf'<tr data-version="{version}">(.*?)</tr>', html, re.S)
    assert row is not None, f"no row for version {version}"
    m = re.search(rf'data-metric="{name}" data-value="([^"]+)" data-ci-low="([^"]+)" '
                  rf'data-ci-high="([^"]+)"', row.group(1))
    assert m is not None, f"no {name} with an interval"
    return float(m.group(1)), float(m.group(2)), float(m.group(3))


def test_rubric_page_known_answer_per_judge_version(client: TestClient, store: Store) -> None:
    # 40 items judged by version one: people agree on half, and are 2 levels off on the rest.
    judge = [float(i % 5 + 1) + (0.2 if i % 3 else -0.2) for i in range(40)]
    ids = seed_judged(store, "r1", [10], 40, lambda step, i: judge[i])
    judged = [nearest_level(v, [1, 2, 3, 4, 5]) for v in judge]
    human = [j if i % 2 == 0 else (j + 2 if j <= 3 else j - 2) for i, j in enumerate(judged)]
    label_rows(store, "r1", ids, human)
    # A changed prompt (version two) on another run, which people agree with entirely.
    ids2 = seed_judged(store, "r2", [10], 12, lambda step, i: float(i % 5 + 1), prompt_hash="ph-two")
    label_rows(store, "r2", ids2, [i % 5 + 1 for i in range(12)])
    # A second labeller on 10 items of run r1.
    label_rows(store, "r1", ids[:10], human[:10], labeller="bo")

    html = client.get("/rubrics/helpfulness").text
    one = JudgeVersion("toy-judge", "transformers", "ph-one", "1").key
    two = JudgeVersion("toy-judge", "transformers", "ph-two", "1").key
    exact, low, high = metric(html, one, "exact")
    assert exact == pytest.approx(0.5) and 0.3 < low < 0.45 and 0.55 < high < 0.7
    kappa = metric(html, one, "kappa_quadratic")[0]
    assert kappa == pytest.approx(cohen_kappa_score(judged, human, weights="quadratic",
                                                    labels=[1, 2, 3, 4, 5]), abs=1e-9)
    assert metric(html, one, "within_1")[0] == pytest.approx(0.5)
    assert metric(html, two, "exact")[0] == 1.0  # never mixed with version one
    assert "62 labels on 52 items by 2 labellers" in html
    assert re.search(r'class="meta labellers" data-items="10"', html)


def test_rubrics_list_counts_labels_and_shows_stored_calibration(
    client: TestClient, store: Store
) -> None:
    ids = seed_judged(store, "r1", [10], 3, lambda step, i: 3.0)
    label_rows(store, "r1", ids, [3, 3, 4])
    store.save_calibration({
        "rubric": "helpfulness", "rubric_version": "0", "judge_backend": "toy", "judge_model": "m",
        "source": "stored labels (3 items)", "n": 3, "criteria": {"helpfulness": {"spearman": 0.81}},
    })
    html = client.get("/rubrics").text
    assert "3 labels on 3 items by 1 labeller" in html
    assert "spearman <b>0.81</b>" in html and "measured version 0, not this one" in html
    assert "stored labels (3 items)" in client.get("/rubrics/helpfulness").text


# -- access ---------------------------------------------------------------------------------


def test_labels_record_the_token_project_and_stay_in_it(default_access: Settings) -> None:
    store = Store(default_access.database_url)
    try:
        seed_judged(store, "mine", [1], 3, lambda step, i: 2.0, project="alpha")
        seed_judged(store, "theirs", [1], 3, lambda step, i: 4.0, project="beta")
        alpha = create_token(store, "alpha")
        with TestClient(create_app(default_access, store=store), base_url="http://127.0.0.1") as c:
            assert c.get(LABEL, follow_redirects=False).status_code == 303  # to /login
            c.headers["Authorization"] = f"Bearer {alpha}"
            for _ in range(3):
                item = shown(c.get(LABEL, params={"labeller": "ann"}).text)
                assert item is not None and item[0] == "mine"  # never another project's run
                assert post(c, *item, "2").status_code == 303
            assert shown(c.get(LABEL, params={"labeller": "ann"}).text) is None
            # Posting a label on another project's run is refused.
            r = post(c, "theirs", "theirs-s1-0", "2")
            assert r.status_code == 403
            # Someone of project beta labelled their own run: alpha's page does not count it.
            store.save_labels([{"run": "theirs", "sample_id": f"theirs-s1-{i}", "rubric": "helpfulness",
                                "criterion": "helpfulness", "value": 4.0, "labeller": "bea",
                                "project": "beta"} for i in range(3)])
            page = c.get("/rubrics/helpfulness").text
            assert "3 labels on 3 items by 1 labeller" in page
            assert "3 labels on 3 items by 1 labeller" in c.get("/rubrics").text
            undone = c.post(f"{LABEL}/undo", data={"labeller": "bea"})
            assert "nothing to undo" in undone.text  # beta's labels are not alpha's to take back
        rows = read.labels_with_verdicts(store, "helpfulness", "alpha")
        assert {(r["run"], r["labeller"]) for r in rows} == {("mine", "ann")}
        assert {r["project"] for r in read.label_export_rows(store, None, "alpha")} == {"alpha"}
    finally:
        store.close()
