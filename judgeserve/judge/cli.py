"""CLI commands of the judge, mounted into ``judgeserve`` by ``judgeserve.cli``.

``app`` holds ``rubric lint``, ``rubric schema`` and ``serve``; the main CLI merges it
with ``main_app.add_typer(judge.cli.app)``. Each command is a thin shell over a library
function, importing Ray / torch only when it runs. ``calibrate`` reads and writes the
store, which the judge never touches: it lives in :mod:`judgeserve.labels_cli`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..exceptions import ConfigError

__all__ = ["app", "rubric_app"]

app = typer.Typer(no_args_is_help=True, help="The LLM judge: rubrics and serving.")
rubric_app = typer.Typer(no_args_is_help=True, help="Check and describe rubric files.")
app.add_typer(rubric_app, name="rubric")


@rubric_app.command("lint")
def lint(files: Annotated[list[Path], typer.Argument(help="Rubric YAML files.")]) -> None:
    """Validate rubric files; errors name file, line and field. Exit 1 if any is invalid."""
    from .rubric import load_rubric

    failed = 0
    for path in files:
        try:
            rubric = load_rubric(path)
        except ConfigError as e:
            failed += 1
            typer.echo(str(e), err=True)
            continue
        names = ", ".join(c.name for c in rubric.criteria)
        typer.echo(f"{path}: ok ({rubric.name} v{rubric.version}, {rubric.mode}: {names})")
    if failed:
        raise typer.Exit(1)


@rubric_app.command("schema")
def schema() -> None:
    """Print the JSON Schema of rubric files (for editor completion)."""
    from .rubric import rubric_json_schema

    typer.echo(json.dumps(rubric_json_schema(), indent=2))


@app.command("serve")
def serve(
    config: Annotated[Path, typer.Option(help="Ray Serve config file.")] = Path(
        "deploy/serve.yaml"
    ),
    address: Annotated[str | None, typer.Option(help="Join a running Ray cluster.")] = None,
    num_cpus: Annotated[int | None, typer.Option(help="CPUs for a local Ray.")] = None,
) -> None:
    """Host the judge and the generator on Ray Serve as the config says (blocks until Ctrl-C)."""
    from ..serve_config import run

    try:
        run(config, blocking=True, ray_address=address, num_cpus=num_cpus)
    except ConfigError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from e
