"""``judgeserve labels export|import``, ``judgeserve calibrate`` and ``judgeserve judge
tune``: human labels on the command line, mounted into ``judgeserve`` by :mod:`judgeserve.cli`.

Thin shells over :mod:`judgeserve.labels`, :mod:`judgeserve.judge.calibrate` and
:mod:`judgeserve.judge.tune`; they live outside ``judge/`` because they read and write the
store, which the judge never touches.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .exceptions import ConfigError

if TYPE_CHECKING:
    from .store import Store

__all__ = ["labels_app", "calibrate", "tune"]

labels_app = typer.Typer(
    no_args_is_help=True, help="Human labels made in the web view: export and import as JSON Lines."
)


@contextmanager
def _store() -> Iterator[Store]:
    from .cli import _settings
    from .store import Store

    store = Store.from_settings(_settings())
    try:
        yield store
    finally:
        store.close()


def _finder(paths: bool = False) -> Any:
    """Rubrics by name in the rubric directory (then the built-in ones); with ``paths``, a
    rubric file's path is taken too (a person at the command line names one)."""
    from .cli import _settings
    from .judge.rubric import find_rubric, rubric_by_name

    dirs = [_settings().rubric_dir]
    return lambda name: (find_rubric if paths else rubric_by_name)(name, dirs)


@labels_app.command("export")
def export(
    rubric: Annotated[str | None, typer.Option(help="Only this rubric's labels.")] = None,
    out: Annotated[Path | None, typer.Option(help="File to write (default: standard output).")] = None,
) -> None:
    """Write every label as JSON Lines, oldest first, with the texts it was made on."""
    from .labels import export_labels

    with _store() as store:
        if out is None:
            n = export_labels(store, sys.stdout, rubric)
        else:
            with out.open("w", encoding="utf-8") as f:
                n = export_labels(store, f, rubric)
    typer.echo(f"exported {n} label{'' if n == 1 else 's'}" + (f" to {out}" if out else ""), err=True)


@labels_app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="JSON Lines, as `judgeserve labels export` writes.")],
) -> None:
    """Store the labels of a file (a labeller's label of an item replaces their old one).
    Every line is checked first; any error names its line and nothing is stored."""
    from .labels import import_labels

    with _store() as store:
        try:
            n = import_labels(store, file, _finder())
        except ConfigError as e:
            typer.echo(str(e), err=True)
            raise typer.Exit(1) from None
    typer.echo(f"imported {n} label{'' if n == 1 else 's'} from {file}")


def calibrate(
    rubric: Annotated[str, typer.Argument(help="Rubric name (or file).")],
    labels: Annotated[
        Path | None,
        typer.Argument(help="Human labels, JSON Lines (default: the labels in the store)."),
    ] = None,
    backend: Annotated[str | None, typer.Option(help="Override the rubric's judge backend.")] = None,
    model: Annotated[str | None, typer.Option(help="Override the rubric's judge model.")] = None,
    url: Annotated[str | None, typer.Option(help="Endpoint for serve/openai backends.")] = None,
    out: Annotated[Path | None, typer.Option(help="Also write the JSON report to this file.")] = None,
) -> None:
    """Judge human-labelled examples and report the judge's agreement with people; the
    report is kept in the store, where the rubric pages show it."""
    from .judge.backends.base import load_backend
    from .judge.calibrate import calibrate as run_calibration
    from .judge.calibrate import format_report, save_report
    from .judge.verdicts import Judge
    from .labels import stored_records

    with _store() as store:
        try:
            spec = _finder(paths=True)(rubric)
            if labels is None:
                records: Any = stored_records(store, spec)
                if not records:
                    raise ConfigError(
                        f"no stored labels for rubric {spec.name!r}: label judged samples at "
                        f"/rubrics/{spec.name}/label, or `judgeserve labels import FILE`"
                    )
                source = f"stored labels ({len(records)} items)"
            else:
                records, source = labels, str(labels)
            options: dict[str, Any] = dict(spec.judge.options)
            if url or spec.judge.url:
                options["url"] = url or spec.judge.url
            judge_backend = load_backend(
                backend or spec.judge.backend, model or spec.judge.model, **options
            )
            try:
                report = run_calibration(Judge(judge_backend), spec, records, source=source)
            finally:
                judge_backend.close()
        except ConfigError as e:
            typer.echo(str(e), err=True)
            raise typer.Exit(2) from e
        store.save_calibration(report.model_dump(mode="json"))
    typer.echo(format_report(report))
    typer.echo(f"report kept in the store: /rubrics/{report.rubric} shows it")
    if out is not None:
        typer.echo(f"report: {save_report(report, out)}")


def tune(
    rubric: Annotated[str, typer.Argument(help="Rubric name (or file).")],
    held_out: Annotated[
        float, typer.Option(help="Share of the labelled items held out to measure on.")
    ] = 0.25,
    seed: Annotated[int, typer.Option(help="Seed of the held-out split and of training.")] = 0,
    max_steps: Annotated[int, typer.Option(help="Most optimizer steps.")] = 1000,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 3e-3,
    rank: Annotated[int, typer.Option(help="LoRA rank.")] = 8,
    backend: Annotated[
        str | None, typer.Option(help="Measure with this backend (vllm, vllm_async, transformers).")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Override the rubric's judge model.")] = None,
    device: Annotated[str, typer.Option(help="Train on this torch device.")] = "cpu",
) -> None:
    """Train a LoRA adapter for the rubric's judge on its stored labels, holding a seeded
    share out, and report agreement on those before and after; the adapter is saved under
    the data dir and the report kept in the store, where /rubrics/RUBRIC shows it."""
    from .cli import _settings
    from .judge.tune import format_tune, tune_judge
    from .labels import stored_records

    with _store() as store:
        try:
            spec = _finder(paths=True)(rubric)
            records = stored_records(store, spec)
            if not records:
                raise ConfigError(
                    f"no stored labels for rubric {spec.name!r}: label judged samples at "
                    f"/rubrics/{spec.name}/label, or `judgeserve labels import FILE`"
                )
            report = tune_judge(
                spec, records, _settings().data_dir / "adapters" / spec.name,
                model=model, backend=backend, held_out=held_out, seed=seed,
                max_steps=max_steps, lr=lr, rank=rank, device=device,
            )
        except ConfigError as e:
            typer.echo(str(e), err=True)
            raise typer.Exit(2) from e
        store.save_tune_report(report.model_dump(mode="json"))
    typer.echo(format_tune(report))
    options = "".join(f"\n    {k}: {v}" for k, v in report.serve_options.items())
    typer.echo(
        f"report kept in the store: /rubrics/{report.rubric} shows it\n"
        f"to judge with it, add to the rubric's judge block:\n  options:{options}"
    )
