"""The `judgeserve` commands README.md and docs/*.md show, read out of the documents.

Fenced code blocks give the lines that start with ``judgeserve `` (or ``$ judgeserve ``),
inline code spans every ``judgeserve ...`` they hold (``$(judgeserve token local)`` too).
Each invocation is resolved against the real CLI: ``rubric lint|schema`` and
``quality lint [FILE] | schema`` stand for two commands each; what follows the command's
path is its arguments, whose ``--options`` must exist. tests/test_documented_commands.py
runs what this finds, so a newly documented command is covered without editing a test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer.main

from judgeserve.cli import app

__all__ = ["ROOT", "Documented", "documented", "cli_commands"]

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)
SPAN = re.compile(r"`([^`\n]+(?:\n[^`\n]+)*)`")
# "judgeserve" as a command: not judgeserve/..., judgeserve.cli, judgeserve_token, JUDGESERVE_.
INVOCATION = re.compile(r"(?<![\w./-])judgeserve[ \t]+([a-z][^`)\"#;&]*)")
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")


@dataclass(frozen=True)
class Documented:
    """One command as a document shows it."""

    where: str  # file:line
    text: str  # the invocation as written, "judgeserve ..."
    path: tuple[str, ...]  # the command's words, e.g. ("token", "create"); () when unresolved
    options: tuple[str, ...]  # the --options it names
    problem: str | None = None  # why it is not a command of the CLI


def root() -> Any:
    """The CLI's root group (typer's own click: told apart from commands by ``commands``)."""
    return typer.main.get_command(app)


def is_group(cmd: Any) -> bool:
    return hasattr(cmd, "commands")


def cli_commands() -> dict[tuple[str, ...], Any]:
    """Every command (not group) of the CLI, by its words."""
    found: dict[tuple[str, ...], Any] = {}

    def walk(cmd: Any, path: tuple[str, ...]) -> None:
        if is_group(cmd):
            for name, sub in cmd.commands.items():
                walk(sub, (*path, name))
        else:
            found[path] = cmd

    walk(root(), ())
    return found


def _candidates(text: str) -> list[tuple[int, str]]:
    """(line number, the invocation after 'judgeserve ') of every command in ``text``."""
    out: list[tuple[int, str]] = []
    blanked = text
    for block in FENCE.finditer(text):
        start = text.count("\n", 0, block.start(1)) + 1
        for i, line in enumerate(block.group(1).splitlines()):
            line = line.strip().removeprefix("$ ")
            if line.startswith("judgeserve "):
                out.append((start + i, re.split(r"\s+#\s", line, maxsplit=1)[0][len("judgeserve "):]))
        # Blank the block (keeping its newlines) so its text is not read again as spans.
        blanked = blanked[: block.start()] + re.sub(r"[^\n]", " ", block.group(0)) + blanked[block.end():]
    for span in SPAN.finditer(blanked):
        body = " ".join(span.group(1).split())
        line = blanked.count("\n", 0, span.start()) + 1
        out.extend((line, m.group(1)) for m in INVOCATION.finditer(body))
    return sorted(out)


def _resolve(words: list[str]) -> list[tuple[tuple[str, ...], list[str]] | str]:
    """The commands ``words`` names (alternatives ``a|b`` expanded) with the words left for
    their arguments, or the problem."""
    results: list[tuple[tuple[str, ...], list[str]] | str] = []

    def walk(cmd: Any, path: tuple[str, ...], rest: list[str]) -> None:
        if not is_group(cmd):
            results.append((path, rest))
            return
        if not rest:
            results.append(f"'judgeserve {' '.join(path)}' is a group, not a command")
            return
        for name in rest[0].split("|"):
            sub = cmd.commands.get(name)
            if sub is None:
                results.append(f"no command {name!r} in 'judgeserve {' '.join(path)}'")
            else:
                walk(sub, (*path, name), rest[1:])

    walk(root(), (), words)
    return results


def documented(files: list[Path] | None = None) -> list[Documented]:
    """Every documented invocation of every document (README.md, docs/*.md)."""
    files = files or [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    commands = cli_commands()
    found: list[Documented] = []
    for file in files:
        for line, invocation in _candidates(file.read_text()):
            where = f"{file.relative_to(ROOT)}:{line}"
            text = "judgeserve " + invocation.strip()
            # "quality lint [FILE] | schema": what follows " | " is a sibling command.
            first, *siblings = [p.split() for p in invocation.split(" | ")]
            for resolved in _resolve(first):
                if isinstance(resolved, str):
                    found.append(Documented(where, text, (), (), resolved))
                    continue
                path, rest = resolved
                alternatives = [(path, rest)]
                for words in siblings:
                    alternatives += [r for r in _resolve([*path[:-1], *words]) if not isinstance(r, str)]
                for p, args in alternatives:
                    options = tuple(OPTION.findall(" ".join(args)))
                    known = {o for param in commands[p].params for o in (*param.opts, *param.secondary_opts)}
                    unknown = [o for o in options if o not in known and o != "--help"]
                    problem = f"'judgeserve {' '.join(p)}' has no option {', '.join(unknown)}" if unknown else None
                    found.append(Documented(where, text, p, options, problem))
    return found
