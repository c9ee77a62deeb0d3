"""Rubric files: the shipped examples validate; mistakes name file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from judgeserve.exceptions import ConfigError
from judgeserve.judge.rubric import (
    BUILTIN_RUBRIC_DIR,
    find_rubric,
    load_rubric,
    parse_rubric,
    rubric_json_schema,
)

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
name: demo
version: 2
description: Answer the question.
scale:
  levels:
    1: bad
    5: good
criteria:
  - name: quality
    description: Is it good?
"""


def error_of(text: str, source: str = "r.yaml") -> str:
    with pytest.raises(ConfigError) as info:
        parse_rubric(text, source)
    return str(info.value)


def test_valid_rubric_parses() -> None:
    rubric = parse_rubric(GOOD)
    assert rubric.version == "2"  # numbers are accepted as version labels
    assert rubric.labels_of("quality") == ("1", "5")
    assert rubric.mode == "single" and rubric.sample_rate == 1.0


@pytest.mark.parametrize("path", sorted(BUILTIN_RUBRIC_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_rubrics_are_valid(path: Path) -> None:
    rubric = load_rubric(path)
    assert rubric.name == path.stem
    assert find_rubric(rubric.name).name == rubric.name


def test_top_level_dirs_are_the_packaged_ones() -> None:
    assert (ROOT / "rubrics").resolve() == BUILTIN_RUBRIC_DIR.resolve()
    assert (ROOT / "prompts" / "single.jinja").is_file()


def test_unknown_field_names_line_and_field() -> None:
    text = GOOD.replace("    5: good\n", "    5: good\n  levles: 3\n")
    message = error_of(text)
    assert "r.yaml:8: scale.levles: Extra inputs are not permitted" in message


def test_unknown_field_in_a_list_item() -> None:
    text = GOOD + "    weight: 2\n"
    assert "r.yaml:11: criteria[0] (quality).weight: Extra inputs are not permitted" in error_of(text)


def test_scale_without_levels_names_the_scale_line() -> None:
    text = GOOD.replace("scale:\n  levels:\n    1: bad\n    5: good\n", "scale: {}\n")
    assert "r.yaml:4: scale.levels: Field required" in error_of(text)


def test_scale_levels_must_be_digits() -> None:
    text = GOOD.replace("    5: good\n", "    10: great\n")
    message = error_of(text)
    assert "r.yaml:5: scale.levels" in message and "digits 0-9" in message


def test_bad_yaml_names_the_line() -> None:
    text = GOOD.replace("criteria:\n", "criteria: [\n")
    message = error_of(text)
    assert message.startswith("r.yaml:") and "invalid YAML" in message
    line = int(message.split(":")[1])
    assert line >= 9


def test_duplicate_key_names_the_line() -> None:
    assert "r.yaml:3: name: duplicate key" in error_of("name: a\nversion: 1\nname: b\n")


def test_criterion_without_any_scale() -> None:
    text = GOOD.replace("scale:\n  levels:\n    1: bad\n    5: good\n", "")
    assert "have no scale" in error_of(text)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(GOOD.replace("name: demo", "name: Demo Rubric"))
    with pytest.raises(ConfigError, match=r"broken\.yaml:1: name: String should match"):
        load_rubric(path)
    with pytest.raises(ConfigError, match="no rubric named 'nope'"):
        find_rubric("nope", [tmp_path])


def test_json_schema_in_docs_is_current() -> None:
    schema = rubric_json_schema()
    assert schema["additionalProperties"] is False
    shipped = json.loads((ROOT / "docs" / "rubric.schema.json").read_text())
    assert shipped == schema, "regenerate with: judgeserve rubric schema > docs/rubric.schema.json"
