"""Validate YAML against a pydantic model with errors that name file, line and field.

YAML is parsed twice from the same text: once into plain data for pydantic, once into
PyYAML's node tree, whose marks give the line of every key and list item. A pydantic
error's ``loc`` is looked up there (a missing field points at its parent's line).
Duplicate keys, which PyYAML silently collapses, are errors too.

Nothing here is rubric-specific: any user-written YAML (alert rules, say) can use it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from ..exceptions import ConfigError

__all__ = ["validate_yaml"]

M = TypeVar("M", bound=BaseModel)
Lines = dict[tuple[str, ...], int]


class _DuplicateKey(Exception):
    def __init__(self, line: int, path: tuple[str, ...]) -> None:
        self.line, self.path = line, path


def _key_lines(node: yaml.Node, path: tuple[str, ...], lines: Lines) -> None:
    """Record the 1-based line of every mapping key / sequence item; reject duplicate keys."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = str(key.value)
            if name in seen:
                raise _DuplicateKey(key.start_mark.line + 1, (*path, name))
            seen.add(name)
            lines[(*path, name)] = key.start_mark.line + 1
            _key_lines(value, (*path, name), lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*path, str(i))] = item.start_mark.line + 1
            _key_lines(item, (*path, str(i)), lines)


def dotted(loc: Iterable[object]) -> str:
    """``('criteria', 0, 'scale')`` → ``criteria[0].scale``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _line_of(loc: Sequence[object], lines: Lines) -> int:
    # pydantic appends markers such as '[key]' for dict keys; drop them, then fall back to
    # the nearest ancestor that has a line.
    path = tuple(str(p) for p in loc if p != "[key]")
    while path and path not in lines:
        path = path[:-1]
    return lines.get(path, 1)


def validate_yaml(text: str, model: type[M], source: str, what: str) -> M:
    """Parse ``text`` and validate it as ``model``; :class:`ConfigError` names line and field."""
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise ConfigError(f"{source}:{line}: invalid YAML: {e.problem or e}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: invalid YAML: {e}") from e
    if not isinstance(data, dict) or root is None:
        raise ConfigError(f"{source}:1: a {what} must be a YAML mapping")
    lines: Lines = {}
    try:
        _key_lines(root, (), lines)
    except _DuplicateKey as e:
        raise ConfigError(f"{source}:{e.line}: {dotted(e.path)}: duplicate key") from None
    try:
        return model.model_validate(data)
    except ValidationError as e:
        problems = [
            f"{source}:{_line_of(err['loc'], lines)}: {dotted(err['loc'])}: {err['msg']}"
            for err in e.errors(include_url=False)
        ]
        raise ConfigError(f"invalid {what}:\n  " + "\n  ".join(problems)) from e
