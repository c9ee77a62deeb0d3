"""Quality files: strict schema, errors that name the file, line and field; the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from judgeserve.cli import app
from judgeserve.exceptions import ConfigError
from judgeserve.ranking import DEFAULT_QUALITY, default_quality, load_quality, parse_quality

HERE = Path(__file__).parent / "quality"


def test_the_default_ships_in_the_package_with_the_issue_gates() -> None:
    q = default_quality()
    assert DEFAULT_QUALITY.is_file() and "judgeserve" in DEFAULT_QUALITY.parts
    assert {g.text() for g in q.gates} == {"memorization.memorized <= 0.05",
                                           "repetition.loop <= 0.02",
                                           "flag.diversity.collapse <= 0.5"}
    assert q.direction("judge.helpfulness.clarity") == "higher"
    assert q.direction("repetition.loop") == "lower"
    assert q.direction("length.tokens") is None
    assert all(m.description for m in q.metrics) and all(g.description for g in q.gates)


def test_a_custom_file_loads() -> None:
    q = load_quality(HERE / "custom.yaml")
    (m,) = q.metrics
    assert (m.metric, m.scale, m.weight, q.confidence) == ("reference.chrf", (0, 100), 3, 0.9)
    assert m.unit(75.0) == 0.75


def test_unknown_key_names_file_line_and_field() -> None:
    with pytest.raises(ConfigError) as e:
        load_quality(HERE / "bad_field.yaml")
    assert f"{HERE / 'bad_field.yaml'}:7: metrics[1].weigth: Extra inputs" in str(e.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("metrics: []\n", "<string>:1: metrics: List should have at least 1 item"),
        ("metrics:\n  - metric: a\n    better: up\n", "<string>:3: metrics[0].better"),
        ("metrics:\n  - metric: a\n    better: higher\n    scale: [1, 1]\n",
         "<string>:2: metrics[0]: Value error, scale must be [low, high] with low < high"),
        ("metrics:\n  - metric: a\n    better: higher\ngates:\n  - metric: b\n",
         "<string>:5: gates[0]: Value error, a gate needs 'at_most', 'at_least' or both"),
        ("metrics:\n  - metric: a\n    better: higher\n  - metric: a\n    better: lower\n",
         "metrics must be listed once; repeated: ['a']"),
        ("metrics:\n  - metric: a b\n    better: higher\n", "<string>:2: metrics[0].metric"),
        ("metrics:\n  - metric: a\n    better: higher\nconfidence: 1\n", "<string>:4: confidence"),
        ("metrics: [\n", "invalid YAML"),
    ],
)
def test_errors_name_the_line_and_field(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_quality(text)
    assert expected in str(e.value)


def test_an_edited_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "q.yaml"
    path.write_text("metrics:\n  - metric: a\n    better: higher\n")
    assert load_quality(path).metrics[0].better == "higher"
    path.write_text("metrics:\n  - metric: a\n    better: lower\n    weight: 2\n")
    assert load_quality(path).metrics[0].better == "lower"
    with pytest.raises(ConfigError, match="cannot read the quality file"):
        load_quality(tmp_path / "missing.yaml")


def test_cli_lint_and_schema() -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["quality", "lint"])
    assert ok.exit_code == 0, ok.output
    assert "gate memorization.memorized <= 0.05" in ok.output
    assert "metric judge.*: higher is better, weight 2" in ok.output
    bad = runner.invoke(app, ["quality", "lint", str(HERE / "bad_field.yaml")])
    assert bad.exit_code == 1 and "bad_field.yaml:7: metrics[1].weigth" in bad.output
    schema = json.loads(runner.invoke(app, ["quality", "schema"]).output)
    assert schema["title"] == "judgeserve quality definition"
    assert schema["additionalProperties"] is False
    assert "gates" in schema["properties"]
