"""The ``judgeserve`` command: a thin layer over library functions."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

import typer
from pydantic import ValidationError

from .settings import Settings

app = typer.Typer(help="Evaluate fine-tuning runs beside the training loop.", no_args_is_help=True)
Host = Annotated[str | None, typer.Option(help="Bind address (default JUDGESERVE_HOST).")]
Port = Annotated[int | None, typer.Option(help="Port (default JUDGESERVE_PORT).")]


def redacted_url(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***`` (for messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


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
    from .launch import run_stack

    run_stack(_settings(host, port))


@app.command()
def api(host: Host = None, port: Port = None) -> None:
    """Serve the HTTP API."""
    from .launch import serve_api

    serve_api(_settings(host, port))


@app.command()
def worker(
    name: Annotated[str | None, typer.Option(help="Consumer name (default host-pid).")] = None,
    ray: Annotated[int, typer.Option(help="Run N workers as Ray actors instead.")] = 0,
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster (default: local).")] = None,
) -> None:
    """Consume the sample stream and score it (SIGTERM finishes the batch in flight)."""
    if ray:
        from .launch import run_ray_workers

        run_ray_workers(_settings(), ray, ray_address)
        return
    from .worker import run_worker

    run_worker(_settings(), consumer=name)


@app.command("generate-worker")
def generate_worker(
    name: Annotated[str | None, typer.Option(help="Consumer name (default host-pid).")] = None,
    ray: Annotated[int, typer.Option(help="Run N generation workers as Ray actors instead.")] = 0,
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster (default: local).")] = None,
) -> None:
    """Checkpoint mode: consume checkpoint jobs, generate the run's probe completions with
    the configured generator (JUDGESERVE_GENERATOR ...), queue them for scoring."""
    from .exceptions import ConfigError

    settings = _settings()
    if ray:
        from .launch import run_ray_workers

        run_ray_workers(settings, ray, ray_address, kind="generate")
        return
    from .generation_worker import run_generation_worker

    try:
        run_generation_worker(settings, consumer=name)
    except ConfigError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from None


@app.command()
def demo(
    port: Port = None,
    steps: Annotated[int, typer.Option(help="Training steps.")] = 1000,
    every: Annotated[
        int, typer.Option(help="Evaluate every N steps (save a checkpoint, or probe).")
    ] = 100,
    stop: Annotated[bool, typer.Option(help="Critical alerts stop training.")] = False,
    serve: Annotated[
        bool | None, typer.Option(help="Keep serving the web view afterwards (default: on a TTY).")
    ] = None,
    mode: Annotated[
        str,
        typer.Option(
            help="checkpoint: the trainer saves, a generator on a local Ray Serve generates; "
            "generate: the callback generates in the trainer."
        ),
    ] = "checkpoint",
) -> None:
    """Train a tiny model on CPU until it memorizes, and watch judgeserve catch it."""
    from .demo import run_demo

    if logging.getLogger().level > logging.DEBUG:  # -v keeps every log line
        logging.getLogger().setLevel(logging.WARNING)
        # The demo prints each alert on its own line; the log notifier's copy would land
        # in the middle of the progress bar.
        logging.getLogger("judgeserve.alerts").setLevel(logging.CRITICAL + 1)
    if mode not in ("checkpoint", "generate"):
        typer.echo(f"--mode must be checkpoint or generate, not {mode!r}", err=True)
        raise typer.Exit(2)
    run_demo(
        _settings(port=port), steps=steps, every=every, stop=stop, serve=serve,
        mode=mode,  # type: ignore[arg-type]
    )


alerts_app = typer.Typer(help="Alert rules: check a rules file, print its schema.")
app.add_typer(alerts_app, name="alerts")


@alerts_app.command("lint")
def alerts_lint(
    path: Annotated[str | None, typer.Argument(help="Rules YAML (default: the shipped rules).")] = None,
) -> None:
    """Validate a rules file; errors name the line and the field."""
    from .alerts import load_rules
    from .exceptions import ConfigError

    try:
        rules = load_rules(path)
    except ConfigError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(1) from None
    for r in rules.rules:
        typer.echo(f"{r.name}: {r.type} on {r.metric} ({r.severity}, {r.action})")


@alerts_app.command("schema")
def alerts_schema() -> None:
    """Print the JSON Schema of rules files (for editor completion)."""
    import json

    from .alerts import rules_json_schema

    typer.echo(json.dumps(rules_json_schema(), indent=2))


quality_app = typer.Typer(help="Quality definitions (which checkpoint is best): check, schema.")
app.add_typer(quality_app, name="quality")


@quality_app.command("lint")
def quality_lint(
    path: Annotated[str | None, typer.Argument(help="Quality YAML (default: the shipped one).")] = None,
) -> None:
    """Validate a quality file; errors name the line and the field."""
    from .exceptions import ConfigError
    from .ranking import load_quality

    try:
        quality = load_quality(path)
    except ConfigError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(1) from None
    for m in quality.metrics:
        typer.echo(f"metric {m.metric}: {m.better} is better, weight {m.weight:g}, "
                   f"scale [{m.scale[0]:g}, {m.scale[1]:g}]")
    for g in quality.gates:
        typer.echo(f"gate {g.text()}")


@quality_app.command("schema")
def quality_schema() -> None:
    """Print the JSON Schema of quality files (for editor completion)."""
    import json

    from .ranking import quality_json_schema

    typer.echo(json.dumps(quality_json_schema(), indent=2))


Json = Annotated[bool, typer.Option("--json", help="Print the API's JSON instead.")]
QualityFile = Annotated[
    str | None, typer.Option("--quality", help="Quality YAML (default JUDGESERVE_QUALITY).")
]


@app.command()
def best(
    run: Annotated[str, typer.Option(help="The run whose checkpoints to rank.")],
    quality: QualityFile = None,
    as_json: Json = False,
) -> None:
    """The run's best checkpoint by quality, with its CI, the checkpoints that cannot be
    told apart from it, and why any was disqualified."""
    from . import read
    from .ranking import load_quality
    from .ranking.report import best_lines

    q = _config(lambda: load_quality(quality or _settings().quality))
    with _store() as store:
        if read.get_run(store, run) is None:
            typer.echo(f"no run named {run!r}", err=True)
            raise typer.Exit(1)
        result = read.best(store, run, q)
    if as_json:
        typer.echo(_dumps(result))
        return
    for line in best_lines(result):
        typer.echo(line)


@app.command()
def compare(
    a: Annotated[str, typer.Argument(help="The first checkpoint, RUN@STEP.")],
    b: Annotated[str, typer.Argument(help="The second checkpoint, RUN@STEP (or STEP of a's run).")],
    quality: QualityFile = None,
    as_json: Json = False,
) -> None:
    """Compare two checkpoints probe by probe: each metric's change b - a with its 95% CI
    and Wilcoxon p (Holm-corrected over the metrics)."""
    from . import read
    from .exceptions import NotComparableError
    from .ranking import load_quality
    from .ranking.report import compare_lines

    q = _config(lambda: load_quality(quality or _settings().quality))
    try:
        ref_a = read.parse_checkpoint(a)
        ref_b = read.parse_checkpoint(b, run=ref_a.run)
    except ValueError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from None
    with _store() as store:
        for ref in (ref_a, ref_b):
            if read.count_step_samples(store, ref.run, ref.step) == 0:
                typer.echo(f"{ref}: no samples at that step of that run", err=True)
                raise typer.Exit(1)
        try:
            result = read.compare_checkpoints(store, ref_a, ref_b, q)
        except NotComparableError as e:
            typer.echo(str(e), err=True)
            raise typer.Exit(1) from None
    if as_json:
        typer.echo(_dumps(result))
        return
    for line in compare_lines(result):
        typer.echo(line)


def _config(load: Any) -> Any:
    from .exceptions import ConfigError

    try:
        return load()
    except ConfigError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from None


def _dumps(value: Any) -> str:
    import json

    return json.dumps(value, indent=2, default=str)


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

    with _store() as store:
        typer.echo(create_token(store, project, name))


@token_app.command("list")
def token_list() -> None:
    from .auth import list_tokens

    with _store() as store:
        for t in list_tokens(store):
            state = "revoked" if t["revoked"] else "active"
            typer.echo(f"{t['id']}  {t['project']}  {state}  {t['created']:%Y-%m-%d}  {t['name']}")


@token_app.command("revoke")
def token_revoke(token_id: str) -> None:
    from .auth import revoke_token

    with _store() as store:
        if not revoke_token(store, token_id):
            typer.echo(f"no token {token_id!r}", err=True)
            raise typer.Exit(1)


@token_app.command("local")
def token_local() -> None:
    """Print the local token (made by the API's first start in JUDGESERVE_DATA_DIR), e.g.
    for curl -H "Authorization: Bearer $(judgeserve token local)" or the web view's login."""
    from .local_token import read_token, token_path

    path = token_path(_settings().data_dir)
    token = read_token(path)
    if token is None:
        typer.echo(f"no local token in {path}: start the API once (judgeserve up)", err=True)
        raise typer.Exit(1)
    typer.echo(token)


@contextmanager
def _store() -> Iterator[Any]:
    from .store import Store

    store = Store.from_settings(_settings())
    try:
        yield store
    finally:
        store.close()


@contextmanager
def _queue(checkpoints: bool = False) -> Iterator[Any]:
    from .stream import Queue

    queue = Queue.from_settings(
        _settings(), create_group=False, stream="checkpoints" if checkpoints else "samples"
    )
    try:
        yield queue
    finally:
        queue.close()


Checkpoints = Annotated[
    bool, typer.Option("--checkpoints", help="Checkpoint jobs (checkpoint mode), not samples.")
]


@dead_app.command("list")
def deadletter_list(limit: int = 100, checkpoints: Checkpoints = False) -> None:
    """One line each: entry id, run@step, sample id (or folder), deliveries, first line of
    the error; then, on stderr, how many and where they were read (Redis, key)."""
    from .exceptions import QueueError

    with _queue(checkpoints) as queue:
        where = f"{queue.dead_key} at {redacted_url(_settings().redis_url)}"
        try:
            items = queue.deadletters(limit)
        except QueueError as e:
            typer.echo(f"cannot read dead letters ({where}): {e}", err=True)
            raise typer.Exit(1) from None
        for d in items:
            p = d["payload"]
            err = d["error"].splitlines()[0] if d["error"] else ""
            what = p.get("path") if checkpoints else p.get("id")
            typer.echo(f"{d['id']}  {p.get('run')}@{p.get('step')}  {what}  x{d['deliveries']}  {err}")
        kind = "checkpoint jobs" if checkpoints else "samples"
        if not items:
            typer.echo(f"no dead letters ({kind}) in {where}", err=True)
        else:
            more = " (the first; --limit for more)" if len(items) == limit else ""
            typer.echo(f"{len(items)} dead letters ({kind}){more} in {where}", err=True)


@dead_app.command("requeue")
def deadletter_requeue(
    ids: Annotated[list[str] | None, typer.Argument()] = None, checkpoints: Checkpoints = False
) -> None:
    """Put dead letters (all, or the given ids) back on their stream."""
    with _queue(checkpoints) as queue:
        n = queue.requeue_deadletters(ids or None)
        typer.echo(f"requeued {n} from {queue.dead_key} to {queue.stream_key} at "
                   f"{redacted_url(_settings().redis_url)}")


@app.command()
def rescore(
    run: Annotated[str, typer.Option(help="The run whose stored samples to score again.")],
    steps: Annotated[
        str | None, typer.Option(help="Steps A:B (inclusive), A:, :B or one step (default: all).")
    ] = None,
    scorer: Annotated[
        list[str] | None,
        typer.Option(help="A scorer family to run again (repeatable; default: every scorer)."),
    ] = None,
    wait: Annotated[bool, typer.Option(help="Follow the workers until they processed them.")] = True,
    timeout: Annotated[float | None, typer.Option(help="Stop following after this many seconds.")] = None,
) -> None:
    """Score a run's stored samples again with the named scorers (an index built, a rubric
    fixed, a judge back up): their scores are replaced, the checkpoints recomputed."""
    from tqdm import tqdm

    from . import read
    from .exceptions import ConfigError, QueueError, StoreError
    from .rescore import parse_steps, queue_rescore, wait_processed
    from .scorers import registered

    settings = _settings()
    try:
        span = parse_steps(steps)
        known = set(registered(settings.scorers)) - set(settings.disabled_scorers)
    except ConfigError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from None
    unknown = sorted(set(scorer or ()) - known)
    if unknown:
        typer.echo(f"unknown scorer {', '.join(map(repr, unknown))}: the workers run "
                   f"{', '.join(sorted(known))}", err=True)
        raise typer.Exit(2)
    try:
        with _store() as store, _queue() as queue:
            if read.get_run(store, run) is None:
                typer.echo(f"no run named {run!r} in {redacted_url(settings.database_url)}", err=True)
                raise typer.Exit(1)
            bar = tqdm(total=read.count_run_samples(store, run, *span), unit="sample",
                       desc="queued", disable=None)
            job = queue_rescore(store, queue, run, steps=span, scorers=scorer,
                                max_backlog=settings.max_backlog,
                                progress=lambda j: bar.update(j.queued - bar.n))
            bar.close()
            which = ", ".join(scorer) if scorer else "every scorer"
            typer.echo(f"queued {job.queued:,} samples of run {run!r} for {which}")
            if not wait or not job.entries:
                return
            done = tqdm(total=len(job.entries), unit="sample", desc="processed", disable=None)
            left = wait_processed(queue, job.entries, timeout=timeout,
                                  progress=lambda n: done.update(n - done.n))
            done.close()
    except (StoreError, QueueError) as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(1) from None
    if left:
        typer.echo(f"{left:,} not processed yet (are workers running?); they stay queued", err=True)
        raise typer.Exit(1)
    typer.echo(f"processed {len(job.entries):,} (a scorer that failed on one is retried, then "
               "dead-lettered: judgeserve deadletter list)")


index_app = typer.Typer(help="Indexes of a run's training data, for the memorization detector.")
app.add_typer(index_app, name="index")


@index_app.command("build")
def index_build(
    files: Annotated[list[str], typer.Argument(help="Training data: .jsonl (one document per line) or text files.")],
    run: Annotated[str, typer.Option(help="The run whose training data this is.")],
    text_field: Annotated[str, typer.Option(help="The text field of JSONL lines.")] = "text",
    min_span: Annotated[int, typer.Option(help="Tokens of verbatim copy that count as memorized.")] = 50,
) -> None:
    """Stream the files into an on-disk n-gram index under JUDGESERVE_INDEX_DIR/RUN
    (default: the data directory's indexes/ folder)."""
    from .detectors.memorization import build_index, run_index_dir
    from .exceptions import ConfigError

    try:
        out = run_index_dir(run, _settings().index_dir)
        stats = build_index(files, out, text_field=text_field, min_span=min_span, progress=True)
    except ConfigError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"indexed {stats.tokens:,} tokens of {stats.documents:,} documents "
               f"({stats.bytes_per_token:.2f} bytes/token) for run {run!r}")
    if stats.skipped or any(f.lower().endswith((".jsonl", ".ndjson")) for f in files):
        typer.echo(f"skipped {stats.skipped:,} JSONL line(s) without a string {text_field!r} field")
    typer.echo(f"wrote {out}: workers with JUDGESERVE_INDEX_DIR={out.parent} use it from their "
               "next batch")


def _mount_judge() -> None:
    from .judge.cli import app as judge_app
    from .labels_cli import calibrate, labels_app, tune

    app.add_typer(judge_app)  # rubric lint|schema, serve
    app.add_typer(labels_app, name="labels")  # labels export|import
    app.command("calibrate")(calibrate)
    tune_app = typer.Typer(no_args_is_help=True, help="The judge, fitted to people's labels.")
    tune_app.command("tune")(tune)
    app.add_typer(tune_app, name="judge")  # judge tune


_mount_judge()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
