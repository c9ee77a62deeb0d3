"""Labels in the store (SQLite and PostgreSQL), as JSON Lines through ``judgeserve labels
export|import``, and ``judgeserve calibrate`` on the stored labels."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from judgeserve import read
from judgeserve.settings import Settings
from judgeserve.store import Store

from .conftest import run_cli
from .judged import seed_judged


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    s = Store(database_url)
    yield s
    s.close()


def label(run: str, sid: str, value: float, labeller: str = "ann", **extra: object) -> dict[str, object]:
    return {"run": run, "sample_id": sid, "rubric": "helpfulness", "criterion": "helpfulness",
            "value": value, "labeller": labeller, "project": None, "rubric_version": "1", **extra}


def test_labels_one_per_labeller_and_item_with_their_verdicts(store: Store) -> None:
    ids = seed_judged(store, "r1", [5], 3, lambda step, i: [2.2, None, 4.9][i])
    store.save_labels([label("r1", ids[0], 2), label("r1", ids[1], 3), label("r1", ids[0], 4, "bo")])
    store.save_labels([label("r1", ids[0], 1)])  # ann changes her mind: replaced, not added
    rows = {(r["sample_id"], r["labeller"]): r for r in read.labels_with_verdicts(store, "helpfulness")}
    assert set(rows) == {(ids[0], "ann"), (ids[1], "ann"), (ids[0], "bo")}
    assert rows[(ids[0], "ann")]["value"] == 1.0
    assert rows[(ids[0], "ann")]["judge_value"] == pytest.approx(2.2)
    assert rows[(ids[0], "ann")]["judge_details"]["prompt_hash"] == "ph-one"
    assert rows[(ids[1], "ann")]["judge_value"] is None  # unparseable verdict
    assert rows[(ids[0], "ann")]["length"] == len("Answer 0 at step 5. ")
    assert read.label_counts(store) == {"helpfulness": {"labels": 3, "items": 2, "labellers": 2}}
    last = read.latest_label(store, "helpfulness", "ann")
    assert last is not None and last["sample_id"] == ids[0] and last["value"] == 1.0
    assert store.delete_label(int(last["id"])) and not store.delete_label(int(last["id"]))
    assert read.label_counts(store)["helpfulness"]["labels"] == 2
    found = read.judged_candidates(store, "helpfulness", ["helpfulness"])
    assert sorted(c["sample_id"] for c in found) == sorted(ids)
    assert {c["criterion"] for c in found} == {"helpfulness"}


def test_calibration_reports_newest_first(store: Store) -> None:
    for version in ("1", "2"):
        store.save_calibration({"rubric": "helpfulness", "rubric_version": version, "n": 3,
                                "criteria": {}})
    store.save_calibration({"rubric": "other", "rubric_version": "1", "n": 1, "criteria": {}})
    assert [r["rubric_version"] for r in read.list_calibrations(store, "helpfulness")] == ["2", "1"]
    latest = read.latest_calibrations(store)
    assert latest["helpfulness"]["rubric_version"] == "2" and latest["other"]["n"] == 1


# -- the CLI --------------------------------------------------------------------------------


def cli_env(settings: Settings, database_url: str | None = None) -> dict[str, str]:
    return {"JUDGESERVE_DATABASE_URL": database_url or settings.database_url,
            "JUDGESERVE_RUBRIC_DIR": str(settings.spool_dir.parent / "rubrics")}


def test_export_then_import_elsewhere_is_the_same(settings: Settings, tmp_path: Path) -> None:
    store = Store(settings.database_url)
    ids = seed_judged(store, "r1", [5], 4, lambda step, i: 3.0)
    store.save_labels([label("r1", ids[0], 5), label("r1", ids[1], 1), label("r1", ids[0], 4, "bo")])
    store.close()
    out = tmp_path / "labels.jsonl"
    done = run_cli("labels", "export", "--out", str(out), env=cli_env(settings))
    assert done.returncode == 0, done.stderr
    assert "exported 3 labels" in done.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert {(x["sample_id"], x["labeller"], x["label"]) for x in lines} == {
        (ids[0], "ann", 5), (ids[1], "ann", 1), (ids[0], "bo", 4)}
    assert lines[0]["completion"].startswith("Answer") and lines[0]["rubric_version"] == "1"

    # Another store with the same samples takes the file; twice is the same as once.
    other_url = f"sqlite:///{tmp_path / 'other.db'}"
    other = Store(other_url)
    seed_judged(other, "r1", [5], 4, lambda step, i: 3.0)
    for _ in range(2):
        done = run_cli("labels", "import", str(out), env=cli_env(settings, other_url))
        assert done.returncode == 0, done.stderr
        assert "imported 3 labels" in done.stdout
    def key(r: dict[str, object]) -> tuple[object, ...]:
        return (r["sample_id"], r["labeller"], r["value"], r["created"])

    assert sorted(map(key, read.labels_with_verdicts(other, "helpfulness"))) == sorted(
        map(key, read.labels_with_verdicts(Store(settings.database_url), "helpfulness")))
    other.close()


def test_import_errors_name_the_line_and_store_nothing(settings: Settings, tmp_path: Path) -> None:
    store = Store(settings.database_url)
    ids = seed_judged(store, "r1", [5], 2, lambda step, i: 3.0)
    good = {"run": "r1", "sample_id": ids[0], "rubric": "helpfulness", "criterion": "helpfulness",
            "label": 4}
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(json.dumps(x) for x in [
        good,
        {**good, "label": 9},
        {**good, "sample_id": "nope"},
        {**good, "criterion": "tone"},
        {**good, "rubric": "no_such"},
        {**good, "colour": "red"},
    ]) + "\nnot json\n")
    done = run_cli("labels", "import", str(bad), env=cli_env(settings))
    assert done.returncode == 1
    err = done.stderr
    assert "nothing was stored" in err
    assert f"{bad}:2: criterion 'helpfulness': label must be one of the levels [1, 2, 3, 4, 5], not 9" in err
    assert f"{bad}:3: sample_id: no sample 'nope' in run 'r1'" in err
    assert f"{bad}:4: rubric 'helpfulness' has no criterion 'tone'" in err
    assert f"{bad}:5: rubric: no rubric named 'no_such'" in err
    assert f"{bad}:6: colour: Extra inputs are not permitted" in err
    assert f"{bad}:7: (line): Invalid JSON" in err
    assert read.label_counts(store) == {}
    store.close()
