"""The ``judgeserve`` command: a thin layer over library functions."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from pydantic import ValidationError

from .settings import Settings

app = typer.Typer(help="Evaluate fine-tuning runs beside the training loop.", no_args_is_help=True)
Host = Annotated[str | None, typer.Option(help="Bind address (default JUDGESERVE_HOST).")]
Port = Annotated[int | None, typer.Option(help="Port (default JUDGESERVE_PORT).")]


def _settings(host: str | None = None, port: int | None = None) -> Settings:
    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as e:
        for err in e.errors():
            name = "JUDGESERVE_" + "_".join(str(p) for p in err["loc"]).upper()
            typer.echo(f"invalid setting {name}: {err['msg']}", err=True)
        raise typer.Exit(2) from None


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@app.command()
def up(host: Host = None, port: Port = None) -> None:
    """API and one worker in one process, for local use."""
    from .server import run_stack

    run_stack(_settings(host, port))


@app.command()
def api(host: Host = None, port: Port = None) -> None:
    """Serve the HTTP API."""
    from .server import serve_api

    serve_api(_settings(host, port))


@app.command()
def worker(
    name: Annotated[str | None, typer.Option(help="Consumer name (default host-pid).")] = None,
) -> None:
    """Consume the sample stream and score it (SIGTERM finishes the batch in flight)."""
    from .worker import run_worker

    run_worker(_settings(), consumer=name)


@app.command()
def demo(port: Port = None) -> None:
    """Start the stack, send a run through it and show what was found."""
    from .demo import run_demo

    run_demo(_settings(port=port))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
