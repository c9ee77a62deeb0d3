"""Validate user-written YAML (rubrics, alert rules) against a pydantic model, with errors
that name the file, the line and the field.

YAML is parsed twice from the same text: once into plain data for pydantic, once into
PyYAML's node tree, whose marks give the line of every key and list item. A pydantic
error's ``loc`` is looked up there (a missing field points at its parent's line).
Duplicate keys, which PyYAML silently collapses, are errors too. List items that have a
``name`` are shown with it (``rules[1] (chrf_down).above``), and the tag a discriminated
union adds to ``loc`` is dropped, since it is no key of the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from .exceptions import ConfigError

__all__ = ["validate_yaml", "field_path"]

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


def field_path(loc: Sequence[Any], data: Any) -> tuple[tuple[str, ...], str]:
    """The YAML path of a pydantic error location, and its readable name."""
    path: list[str] = []
    shown = ""
    node = data
    for part in loc:
        if part == "[key]":
            continue  # pydantic's marker for a dict key
        if isinstance(node, dict) and isinstance(part, str) and part not in node and (
            node.get("type") == part
        ):
            continue  # a discriminated union's tag, not a key of the file
        if isinstance(part, int):
            shown += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("name"), str):
                shown += f" ({node['name']})"
        else:
            shown += f".{part}" if shown else str(part)
            node = node.get(part) if isinstance(node, dict) else None
        path.append(str(part))
    return tuple(path), shown or "(top level)"


def validate_yaml(
    text: str, model: type[M], source: str, what: str, *, empty: M | None = None
) -> M:
    """Parse ``text`` and validate it as ``model`` (``empty`` stands for an empty file);
    :class:`ConfigError` names the source, line and field of every problem."""
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise ConfigError(f"{source}:{line}: invalid YAML: {e.problem or e}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: invalid YAML: {e}") from e
    if data is None and empty is not None:
        return empty
    if not isinstance(data, dict) or root is None:
        raise ConfigError(f"{source}:1: a {what} must be a YAML mapping")
    lines: Lines = {}
    try:
        _key_lines(root, (), lines)
    except _DuplicateKey as e:
        _, shown = field_path([int(p) if p.isdigit() else p for p in e.path], data)
        raise ConfigError(f"{source}:{e.line}: {shown}: duplicate key") from None
    try:
        return model.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors(include_url=False):
            path, shown = field_path(err["loc"], data)
            while path and path not in lines:
                path = path[:-1]
            problems.append(f"{source}:{lines.get(path, 1)}: {shown}: {err['msg']}")
        raise ConfigError(f"invalid {what}:\n  " + "\n  ".join(problems)) from e
