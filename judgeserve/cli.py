"""The ``judgeserve`` command: a thin layer over library functions."""

from __future__ import annotations

import logging
from typing import Annotated, Any

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
    ray: Annotated[int, typer.Option(help="Run N workers as Ray actors instead.")] = 0,
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster (default: local).")] = None,
) -> None:
    """Consume the sample stream and score it (SIGTERM finishes the batch in flight)."""
    if ray:
        from .workers_ray import run_ray_workers

        run_ray_workers(_settings(), ray, ray_address)
        return
    from .worker import run_worker

    run_worker(_settings(), consumer=name)


@app.command()
def demo(port: Port = None) -> None:
    """Start the stack, send a run through it and show what was found."""
    from .demo import run_demo

    run_demo(_settings(port=port))


token_app = typer.Typer(help="API tokens: one project each, stored only as hashes.")
dead_app = typer.Typer(help="Samples whose scoring kept failing.")
app.add_typer(token_app, name="token")
app.add_typer(dead_app, name="deadletter")


@token_app.command("create")
def token_create(
    project: Annotated[str, typer.Option(help="The project whose runs the token may reach.")],
    name: Annotated[str, typer.Option(help="A label, e.g. who holds it.")] = "",
) -> None:
    """Make a token; it is printed once and cannot be shown again."""
    from .auth import create_token
    from .store import Store

    typer.echo(create_token(Store(_settings().database_url), project, name))


@token_app.command("list")
def token_list() -> None:
    from .auth import list_tokens
    from .store import Store

    for t in list_tokens(Store(_settings().database_url)):
        state = "revoked" if t["revoked"] else "active"
        typer.echo(f"{t['id']}  {t['project']}  {state}  {t['created']:%Y-%m-%d}  {t['name']}")


@token_app.command("revoke")
def token_revoke(token_id: str) -> None:
    from .auth import revoke_token
    from .store import Store

    if not revoke_token(Store(_settings().database_url), token_id):
        typer.echo(f"no token {token_id!r}", err=True)
        raise typer.Exit(1)


def _queue() -> Any:
    from .queue import Queue

    s = _settings()
    return Queue(s.redis_url, prefix=s.stream_prefix, group=s.consumer_group)


@dead_app.command("list")
def deadletter_list(limit: int = 100) -> None:
    for d in _queue().deadletters(limit):
        p = d["payload"]
        err = d["error"].splitlines()[0] if d["error"] else ""
        typer.echo(f"{d['id']}  {p.get('run')}@{p.get('step')}  {p.get('id')}  x{d['deliveries']}  {err}")


@dead_app.command("requeue")
def deadletter_requeue(ids: Annotated[list[str] | None, typer.Argument()] = None) -> None:
    """Put dead letters (all, or the given ids) back on the sample stream."""
    typer.echo(f"requeued {_queue().requeue_deadletters(ids or None)}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
