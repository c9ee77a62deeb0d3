"""Rules files: strict schema, errors that name the file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from judgeserve.alerts import (
    DEFAULT_RULES,
    DivergenceRule,
    ThresholdRule,
    default_rules,
    load_rules,
    parse_rules,
    rules_json_schema,
)
from judgeserve.cli import app
from judgeserve.exceptions import ConfigError

HERE = Path(__file__).parent / "rules"


def test_default_rules_ship_in_the_package_and_cover_every_rule_type() -> None:
    rules = default_rules()
    assert DEFAULT_RULES.is_file() and "judgeserve" in DEFAULT_RULES.parts
    assert {r.type for r in rules.rules} == {"threshold", "regression", "trend", "divergence"}
    names = {r.name for r in rules.rules}
    assert {"memorization_while_loss_falls", "mode_collapse", "loops"} <= names
    assert all(r.description for r in rules.rules)
    headline = next(r for r in rules.rules if r.name == "memorization_while_loss_falls")
    assert isinstance(headline, DivergenceRule) and headline.loss == "train.loss"


def test_a_custom_file_loads() -> None:
    (rule,) = load_rules(HERE / "custom.yaml").rules
    assert isinstance(rule, ThresholdRule)
    assert (rule.above, rule.action, rule.severity, rule.min_samples) == (3, "stop", "critical", 2)


def test_unknown_key_names_file_line_and_rule() -> None:
    with pytest.raises(ConfigError) as e:
        load_rules(HERE / "bad_field.yaml")
    assert f"{HERE / 'bad_field.yaml'}:11: rules[1] (chrf_down).checkpoint: Extra inputs" in str(e.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rules:\n  - name: a\n    type: threshold\n    metric: m\n", "<string>:2: rules[0] (a): Value error, a threshold rule needs"),
        ("rules:\n  - name: a\n    type: regression\n    metric: m\n    worse: up\n", "<string>:5: rules[0] (a).worse"),
        ("rules:\n  - name: a\n    type: nope\n    metric: m\n", "<string>:2: rules[0] (a): Input tag 'nope'"),
        ("rules:\n  - name: Bad Name\n    type: threshold\n    metric: m\n    above: 1\n", "<string>:2: rules[0] (Bad Name).name"),
        ("rules:\n  - name: a\n    type: regression\n    metric: m\n    worse: higher\n    confidence: 1.5\n", "<string>:6: rules[0] (a).confidence"),
        ("rules:\n  - name: a\n    type: threshold\n    metric: m\n    above: 1\n    above: 2\n", "<string>:6: rules[0] (a).above: duplicate key"),
        ("rules: [\n", "<string>:2: invalid YAML"),
        ("- just a list\n", "<string>:1: a rules file must be a YAML mapping"),
    ],
)
def test_errors_point_at_the_line(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_rules(text)
    assert expected in str(e.value), str(e.value)


def test_rule_names_must_be_unique() -> None:
    text = "rules:\n" + "  - {name: a, type: threshold, metric: m, above: 1}\n" * 2
    with pytest.raises(ConfigError, match="repeated: \\['a'\\]"):
        parse_rules(text)


def test_an_empty_file_is_no_rules() -> None:
    assert parse_rules("").rules == []


def test_every_field_is_described() -> None:
    schema = rules_json_schema()
    for name, model in schema["$defs"].items():
        for field, spec in model.get("properties", {}).items():
            assert spec.get("description"), f"{name}.{field} has no description"


def test_cli_lint(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["alerts", "lint"])
    assert ok.exit_code == 0 and "memorization_while_loss_falls: divergence" in ok.output
    bad = runner.invoke(app, ["alerts", "lint", str(HERE / "bad_field.yaml")])
    assert bad.exit_code == 1 and "chrf_down" in bad.output
