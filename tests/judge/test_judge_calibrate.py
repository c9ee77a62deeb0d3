"""Calibration: agreement statistics, label files, and the CLI commands around them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from judgeserve import read
from judgeserve.app import create_app
from judgeserve.exceptions import ConfigError
from judgeserve.judge.calibrate import (
    calibrate,
    cohen_kappa,
    load_labels,
    pairwise_agreement,
    spearman,
)
from judgeserve.judge.cli import app
from judgeserve.judge.rubric import BUILTIN_RUBRIC_DIR, Rubric
from judgeserve.judge.verdicts import Item, Judge, PairVerdict, Verdict
from judgeserve.schema import Sample
from judgeserve.settings import Settings
from judgeserve.store import Store
from judgeserve.testing.toy_judge import (
    TOY_RUBRIC,
    expected_level,
    expected_pair,
    toy_pairwise_rubric,
)

from ..conftest import run_cli


def test_cohen_kappa_known_values() -> None:
    # observed agreement 0.75, chance agreement 0.5 -> kappa 0.5
    assert cohen_kappa([1, 1, 2, 2], [1, 2, 2, 2], [1, 2]) == pytest.approx(0.5)
    assert cohen_kappa([1, 2, 3], [1, 2, 3], [1, 2, 3], "quadratic") == pytest.approx(1.0)
    # a near miss costs less than a far one under quadratic weights
    near = cohen_kappa([1, 2, 3, 4, 5], [1, 2, 3, 5, 5], [1, 2, 3, 4, 5], "quadratic")
    far = cohen_kappa([1, 2, 3, 4, 5], [1, 2, 3, 1, 5], [1, 2, 3, 4, 5], "quadratic")
    assert near is not None and far is not None and near > far
    assert cohen_kappa([3, 3], [3, 3], [1, 3]) is None  # undefined, not 1.0 or 0.0


def test_spearman_undefined_cases() -> None:
    assert spearman([1.0, 2.0, 3.0], [1.0, 2.0, 4.0]) == pytest.approx(1.0)
    assert spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) is None
    assert spearman([1.0, 2.0], [1.0, 2.0]) is None


def _pair(outcome: str | None, consistent: bool = True) -> PairVerdict:
    v = Verdict(label=None, value=None, method="unparseable")
    value = {"win": 1.0, "tie": 0.5, "loss": 0.0}.get(outcome or "")
    return PairVerdict(outcome, value, consistent, None, (v, v))  # type: ignore[arg-type]


def test_pairwise_accuracy_with_and_without_ties() -> None:
    pairs = [
        (_pair("win"), "win"),
        (_pair("loss"), "win"),
        (_pair("tie", consistent=False), "win"),  # judge undecided
        (_pair("win"), "tie"),  # human undecided
        (_pair(None), "loss"),  # unparseable
    ]
    metrics = pairwise_agreement(pairs)
    assert metrics["n"] == 5 and metrics["unparseable"] == 1 and metrics["inconsistent"] == 1
    assert metrics["accuracy_with_ties"] == pytest.approx(1 / 4)
    assert metrics["accuracy_without_ties"] == pytest.approx(1 / 2)
    assert metrics["n_without_ties"] == 2


def write_labels(path: Path, items: list[Item], flip: int = 0) -> Path:
    with path.open("w") as f:
        for i, item in enumerate(items):
            level = int(expected_level(item.completion))
            if i < flip:
                level = 6 - level  # a human who disagrees
            f.write(
                json.dumps({"prompt": item.prompt, "completion": item.completion, "label": level})
                + "\n"
            )
    return path


def test_calibrate_toy_judge(
    transformers_backend: Any, rubric: Rubric, toy_items: list[Item], tmp_path: Path
) -> None:
    labels = write_labels(tmp_path / "labels.jsonl", toy_items, flip=2)
    report = calibrate(Judge(transformers_backend), rubric, labels)
    metrics = report.criteria["marker"]
    assert report.n == len(toy_items) and metrics["unparseable"] == 0
    assert report.rubric_version == "1" and report.judge_model == transformers_backend.model
    assert metrics["exact_agreement"] == pytest.approx(10 / 12)
    assert 0 < metrics["kappa"] < 1 and 0 < metrics["spearman"] < 1  # type: ignore[operator]


def test_calibrate_toy_judge_pairwise(
    transformers_backend: Any, pairwise_items: list[Item], tmp_path: Path
) -> None:
    # People said which answer won; two of them said the opposite of the toy's rule.
    path = tmp_path / "pairs.jsonl"
    with path.open("w") as f:
        for i, item in enumerate(pairwise_items):
            won = expected_pair(item.completion, item.baseline or "") == "A"
            label = ("loss" if won else "win") if i < 2 else ("win" if won else "loss")
            row = {"prompt": item.prompt, "completion": item.completion, "label": label}
            f.write(json.dumps({**row, "baseline": item.baseline}) + "\n")
    report = calibrate(Judge(transformers_backend), toy_pairwise_rubric(), path)
    metrics = report.criteria["marker"]
    n = len(pairwise_items)
    assert report.n == n and metrics["inconsistent"] == 0
    assert metrics["accuracy_with_ties"] == pytest.approx((n - 2) / n)
    assert metrics["accuracy_without_ties"] == pytest.approx((n - 2) / n)


def test_label_file_errors_name_the_line(rubric: Rubric, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "p", "completion": "c", "label": 5}\n{"prompt": "p", "label": 5}\n')
    with pytest.raises(ConfigError, match=r"bad\.jsonl:2: completion: Field required"):
        load_labels(path, rubric)


def test_cli_rubric_lint_and_schema(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(
        app, ["rubric", "lint", *map(str, sorted(BUILTIN_RUBRIC_DIR.glob("*.yaml")))]
    )
    assert ok.exit_code == 0, ok.output
    assert "helpfulness.yaml: ok" in ok.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(TOY_RUBRIC.replace("reference: ignored", "refrence: ignored"))
    result = runner.invoke(app, ["rubric", "lint", str(bad)])
    assert result.exit_code == 1 and f"{bad}:4: refrence: Extra inputs" in result.output
    schema = runner.invoke(app, ["rubric", "schema"])
    assert json.loads(schema.output)["title"] == "judgeserve rubric"


def test_cli_calibrate_file_keeps_the_report_in_the_store(
    settings: Settings, toy_model: Path, toy_items: list[Item], tmp_path: Path
) -> None:
    rubric_file = tmp_path / "toy.yaml"
    rubric_file.write_text(TOY_RUBRIC)
    labels = write_labels(tmp_path / "labels.jsonl", toy_items[:4])
    out = tmp_path / "report.json"
    done = run_cli(
        "calibrate", str(rubric_file), str(labels), "--backend", "transformers",
        "--model", str(toy_model), "--out", str(out),
        env={"JUDGESERVE_DATABASE_URL": settings.database_url},
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["criteria"]["marker"]["exact_agreement"] == 1.0
    assert report["rubric"] == "toy" and report["judge_backend"] == "transformers"
    assert report["source"] == str(labels)
    (stored,) = read.list_calibrations(Store(settings.database_url), "toy")
    assert stored == report


def test_cli_calibrate_reads_stored_labels_and_the_rubric_page_shows_it(
    settings: Settings, toy_model: Path, toy_items: list[Item], tmp_path: Path
) -> None:
    rubrics = tmp_path / "rubrics"
    rubrics.mkdir()
    (rubrics / "toy.yaml").write_text(TOY_RUBRIC)
    store = Store(settings.database_url)
    items = toy_items[:6]
    with store.begin() as conn:
        store.upsert_run(conn, "r1", 1)
        store.save_samples(conn, [Sample(run="r1", step=1, id=f"s{i}", prompt=it.prompt,
                                         completion=it.completion) for i, it in enumerate(items)])
    # People agree with the toy judge on all but the last text.
    levels = [int(expected_level(it.completion)) for it in items]
    levels[-1] = 6 - levels[-1]
    store.save_labels([
        {"run": "r1", "sample_id": f"s{i}", "rubric": "toy", "criterion": "marker",
         "value": float(v), "labeller": "ann"}
        for i, v in enumerate(levels)
    ])
    env = {"JUDGESERVE_DATABASE_URL": settings.database_url, "JUDGESERVE_RUBRIC_DIR": str(rubrics)}
    done = run_cli("calibrate", "toy", "--backend", "transformers", "--model", str(toy_model), env=env)
    assert done.returncode == 0, done.stderr
    assert "6 labelled examples" in done.stdout and "/rubrics/toy shows it" in done.stdout
    (report,) = read.list_calibrations(store, "toy")
    assert report["source"] == "stored labels (6 items)" and report["n"] == 6
    assert report["criteria"]["marker"]["exact_agreement"] == pytest.approx(5 / 6)
    # The rubrics pages read it from the store (not from files beside the labels).
    app = create_app(settings.model_copy(update={"rubric_dir": rubrics}), store=store)
    with TestClient(app) as client:
        listed = client.get("/rubrics").text
        assert "stored labels (6 items)" in listed and "exact_agreement <b>0.833</b>" in listed
        assert "stored labels (6 items)" in client.get("/rubrics/toy").text
    store.close()
    # Without labels, it says where labels come from.
    empty = run_cli("calibrate", "helpfulness", env=env)
    assert empty.returncode == 2 and "/rubrics/helpfulness/label" in empty.stderr


@pytest.mark.parametrize("package", ["judgeserve.judge", "judgeserve.callbacks"])
def test_lazy_names_are_not_submodule_names(package: str) -> None:
    # `from . import calibrate` in a fresh process got the lazily exported *function*
    # calibrate, not the module, and `judgeserve calibrate` crashed on every call.
    import importlib
    import pkgutil

    pkg = importlib.import_module(package)
    submodules = {m.name for m in pkgutil.iter_modules(pkg.__path__)}
    assert set(pkg.__all__) & submodules == set()
