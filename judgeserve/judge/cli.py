"""CLI commands of the judge, mounted into ``judgeserve`` by ``judgeserve.cli``.

``app`` holds ``rubric lint``, ``rubric schema``, ``serve`` and ``calibrate``; the main
CLI merges it with ``main_app.add_typer(judge.cli.app)``. Each command is a thin shell
over a library function, importing Ray / torch only when it runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ..exceptions import ConfigError

__all__ = ["app", "rubric_app"]

app = typer.Typer(no_args_is_help=True, help="The LLM judge: rubrics, serving, calibration.")
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


@app.command("calibrate")
def calibrate(
    rubric: Annotated[str, typer.Argument(help="Rubric file or name.")],
    labels: Annotated[Path, typer.Argument(help="Human labels, JSON Lines.")],
    backend: Annotated[
        str | None, typer.Option(help="Override the rubric's judge backend.")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Override the rubric's judge model.")] = None,
    url: Annotated[str | None, typer.Option(help="Endpoint for serve/openai backends.")] = None,
    out: Annotated[Path | None, typer.Option(help="Where to write the JSON report.")] = None,
) -> None:
    """Score human-labelled examples and report the judge's agreement with people."""
    from .backends.base import load_backend
    from .calibrate import calibrate as run_calibration
    from .calibrate import format_report, save_report
    from .rubric import find_rubric
    from .verdicts import Judge

    try:
        spec = find_rubric(rubric)
        options: dict[str, Any] = dict(spec.judge.options)
        if url or spec.judge.url:
            options["url"] = url or spec.judge.url
        judge_backend = load_backend(
            backend or spec.judge.backend, model or spec.judge.model, **options
        )
        try:
            report = run_calibration(Judge(judge_backend), spec, labels)
        finally:
            judge_backend.close()
    except ConfigError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from e
    typer.echo(format_report(report))
    target = out or labels.with_suffix(
        f".{report.rubric}-v{report.rubric_version}.calibration.json"
    )
    typer.echo(f"report: {save_report(report, target)}")
