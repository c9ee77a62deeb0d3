"""Every command README.md and docs/ show, run as a new user runs it: in a fresh process.

The commands are read out of the documents (tests/documented.py), so a newly documented
command is covered without editing this file — and fails here until it has a real
invocation below. Each documented command must exist with the options the documents give
it; its ``--help`` must work in a fresh process; and one real invocation runs it against a
live stack (``judgeserve up`` on this machine's Redis and a SQLite store, auth on, as a
user gets it), checking what it printed and what it did. Long-running commands are
started, probed and stopped with SIGTERM, and must exit cleanly.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis

from judgeserve import JudgeClient
from judgeserve.local_token import read_token, token_path

from .conftest import REDIS_HOST, REDIS_PORT, free_port, wait_for
from .documented import ROOT, cli_commands, documented

DOCUMENTED = documented()
DOCUMENTED_PATHS = sorted({d.path for d in DOCUMENTED if d.path})
SCRIPT = Path(sys.executable).parent / "judgeserve"


def command(*args: str) -> list[str]:
    """The installed `judgeserve` script, as a user types it (``python -m`` where the
    environment has no scripts, e.g. a bare checkout)."""
    return [str(SCRIPT), *args] if SCRIPT.exists() else [sys.executable, "-m", "judgeserve.cli", *args]


def name(path: tuple[str, ...]) -> str:
    return " ".join(path)


# -- what the documents show --------------------------------------------------------------


def test_the_documents_show_commands() -> None:
    # The reader works: the README's command list alone names more than a dozen.
    assert len(DOCUMENTED_PATHS) >= 15, DOCUMENTED_PATHS
    assert ("token", "create") in DOCUMENTED_PATHS and ("rubric", "schema") in DOCUMENTED_PATHS


def test_every_documented_command_exists_with_its_options() -> None:
    wrong = [f"{d.where}: {d.text}: {d.problem}" for d in DOCUMENTED if d.problem]
    assert wrong == [], "documented commands the CLI does not have:\n" + "\n".join(wrong)


def test_every_command_is_documented() -> None:
    undocumented = sorted(name(p) for p in set(cli_commands()) - set(DOCUMENTED_PATHS))
    assert undocumented == [], "commands README.md and docs/ never show: " + ", ".join(undocumented)


def test_every_documented_command_has_a_real_invocation() -> None:
    missing = [f"judgeserve {name(p)} ({next(d.where for d in DOCUMENTED if d.path == p)})"
               for p in DOCUMENTED_PATHS if p not in REAL]
    assert missing == [], "documented commands without a real invocation here:\n" + "\n".join(missing)
    stale = sorted(name(p) for p in set(REAL) - set(DOCUMENTED_PATHS))
    assert stale == [], "real invocations of commands no document shows: " + ", ".join(stale)


def test_docs_web_shows_every_page() -> None:
    """docs/web.md names every page the web view serves (issue 17: /deadletter was missing)."""
    from fastapi.responses import HTMLResponse

    from judgeserve.web import routers

    web = (ROOT / "docs" / "web.md").read_text()
    pages = {re.sub(r":\w+}", "}", r.path) for router in routers for r in router.routes
             if getattr(r, "response_class", None) is HTMLResponse}
    assert "/deadletter" in pages and "/runs/{run}" in pages
    missing = sorted(p for p in pages if not re.search(rf"`{re.escape(p)}[`?]|{re.escape(p)}[,)]", web))
    assert missing == [], f"pages docs/web.md does not show: {missing}"


@pytest.mark.parametrize("path", DOCUMENTED_PATHS, ids=name)
def test_help_in_a_fresh_process(path: tuple[str, ...]) -> None:
    r = subprocess.run(command(*path, "--help"), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stdout + r.stderr
    assert f"judgeserve {name(path)}" in " ".join(r.stdout.split()), r.stdout
    # Every option a document gives the command is in its help.
    for option in {o for d in DOCUMENTED if d.path == path for o in d.options}:
        assert option in r.stdout, (option, r.stdout)


# -- a live stack ---------------------------------------------------------------------------


@dataclass
class Stack:
    """`judgeserve up` in a subprocess, and the environment every command here runs in."""

    env: dict[str, str]
    url: str
    root: Path
    proc: subprocess.Popen[bytes] | None = None
    token: str = ""
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def get(self, route: str, **params: Any) -> Any:
        r = httpx.get(f"{self.url}{route}", params=params, headers=self.auth(), timeout=10)
        assert r.status_code == 200, (route, r.status_code, r.text)
        return r.json()

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}

    def client(self, run: str) -> JudgeClient:
        return JudgeClient(self.url, run=run, token=self.token, spool_dir=self.root / "spool")

    def cli(self, *args: str, ok: bool = True, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(command(*args), capture_output=True, text=True, timeout=timeout,
                           env={**self.env, **env}, cwd=self.root)
        assert "Traceback" not in r.stderr, r.stderr
        if ok:
            assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r

    def start(self, *args: str, log: str, **env: str) -> subprocess.Popen[bytes]:
        with (self.root / log).open("ab") as out:  # the child keeps its own descriptor
            proc = subprocess.Popen(command(*args), env={**self.env, **env}, cwd=self.root,
                                    stdout=out, stderr=subprocess.STDOUT)
        self.started.append(proc)
        return proc

    def reap(self) -> None:
        """Kill what a failed case left running."""
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.started.clear()

    def log(self, log: str) -> str:
        return (self.root / log).read_text(errors="replace")

    def stop(self, proc: subprocess.Popen[bytes], log: str, timeout: float = 60) -> None:
        """SIGTERM, as a service manager stops it: a clean exit, no stack dump."""
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"still running {timeout}s after SIGTERM:\n{self.log(log)}") from None
        assert code == 0, (code, self.log(log))
        assert "Traceback" not in self.log(log), self.log(log)


def healthz(url: str) -> dict[str, Any] | None:
    try:
        r = httpx.get(f"{url}/healthz", timeout=5)
    except httpx.HTTPError:
        return None
    return r.json() if r.status_code == 200 else None


def worker_names(url: str) -> set[str]:
    return {w["name"] for w in (healthz(url) or {}).get("workers", [])}


def stack_env(root: Path, redis_db: int, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
        "JUDGESERVE_REDIS_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{redis_db}",
        "JUDGESERVE_DATABASE_URL": f"sqlite:///{root / 'judgeserve.db'}",
        "JUDGESERVE_STREAM_PREFIX": f"doc{uuid.uuid4().hex[:8]}",
        "JUDGESERVE_DATA_DIR": str(root / "data"),
        "JUDGESERVE_INDEX_DIR": str(root / "indexes"),
        "JUDGESERVE_SPOOL_DIR": str(root / "spool"),
        "JUDGESERVE_PORT": str(port),
        "JUDGESERVE_CHECKPOINT_IDLE_S": "1",
        "JUDGESERVE_CLAIM_IDLE_MS": "2000",
        # A sample whose completion says POISON fails its scorer every time: dead letters.
        "JUDGESERVE_SCORERS": '["tests.plugins:PoisonScorer"]',
        "JUDGESERVE_RETRY_DELAY_S": "0.05",
        "JUDGESERVE_MAX_DELIVERIES": "2",
        # The toy judge's rubric, by name (labels, calibrate).
        "JUDGESERVE_RUBRIC_DIR": str(rubric_dir(root)),
    }


def rubric_dir(root: Path) -> Path:
    from judgeserve.testing.toy_judge import TOY_RUBRIC

    (root / "rubrics").mkdir(exist_ok=True)
    (root / "rubrics" / "toy.yaml").write_text(TOY_RUBRIC)
    return root / "rubrics"


@pytest.fixture(scope="module")
def stack(redis_db: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("stack")
    port = free_port()
    s = Stack(stack_env(root, redis_db, port), f"http://127.0.0.1:{port}", root)
    s.proc = s.start("up", log="up.log")
    s.started.clear()  # the stack outlives every case; reap() is for what a case starts
    try:
        wait_for(lambda: bool(worker_names(s.url)) or s.proc.poll() is not None, timeout=60, every=0.2)
        assert s.proc.poll() is None, s.log("up.log")
        token = read_token(token_path(root / "data"))
        assert token, s.log("up.log")
        s.token = token
        yield s
    finally:
        s.proc.send_signal(signal.SIGTERM)
        try:
            s.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            s.proc.kill()
            s.proc.wait()
        r = redis.Redis.from_url(s.env["JUDGESERVE_REDIS_URL"])
        for key in r.scan_iter(f"{s.env['JUDGESERVE_STREAM_PREFIX']}:*"):
            r.delete(key)
        r.close()


# -- one real invocation of each documented command -----------------------------------------

Case = Callable[[Stack], None]
REAL: dict[tuple[str, ...], Any] = {}  # the command's words -> its first case
VARIANTS: list[Any] = []  # further cases of a command (other options)


def real(*path: str, variant: str = "", slow: bool = False, timeout: int | None = None) -> Callable[[Case], Case]:
    def register(case: Case) -> Case:
        marks = [pytest.mark.slow] if slow else []
        if timeout:
            marks.append(pytest.mark.timeout(timeout))
        param = pytest.param(path, case, marks=marks, id=" ".join((*path, variant)).strip())
        if variant:
            VARIANTS.append(param)
        else:
            REAL[path] = param
        return case

    return register


def ray_tmpdir() -> str:
    """A Ray temp dir of our own: a local Ray finds no other session's cluster there, and
    the path is short (Ray's socket paths must fit in 107 bytes)."""
    import tempfile

    return tempfile.mkdtemp(prefix="jsray", dir="/tmp")


def test_real_invocations_are_registered() -> None:
    assert REAL, "no real invocation registered"


def scored(stack: Stack, run: str, step: int, n: int) -> Callable[[], bool]:
    def check() -> bool:
        r = httpx.get(f"{stack.url}/v1/runs/{run}/steps/{step}", headers=stack.auth(), timeout=10)
        return r.status_code == 200 and r.json()["total"] == n and all(
            s["scores"] for s in r.json()["samples"])

    return check


@real("up")
def _up(stack: Stack) -> None:
    # A second stack of its own (own store, prefix, data dir): the first start makes the
    # local token and says where; SIGTERM stops it cleanly.
    port = free_port()
    root = stack.root / "second"
    root.mkdir()
    env = stack_env(root, int(stack.env["JUDGESERVE_REDIS_URL"].rsplit("/", 1)[1]), free_port())
    url = f"http://127.0.0.1:{port}"
    second = Stack(env, url, root, started=stack.started)
    proc = second.start("up", "--port", str(port), log="up.log")
    wait_for(lambda: bool(worker_names(url)) or proc.poll() is not None, timeout=60, every=0.2)
    assert proc.poll() is None, second.log("up.log")
    token = read_token(token_path(root / "data"))
    assert token and token in second.log("up.log")  # printed once, at the first start
    assert httpx.get(f"{url}/v1/runs", timeout=10).status_code == 401
    assert httpx.get(f"{url}/v1/runs", headers=second.auth(token), timeout=10).json() == {"runs": []}
    second.stop(proc, "up.log")


@real("api")
def _api(stack: Stack) -> None:
    # A second API over the stack's store and stream: it answers for the stack's runs.
    port = free_port()
    with stack.client("api-run") as client:
        client.submit(1, [{"completion": "served by one API, read through another"}])
        assert client.flush(30) and client.errors == []
    proc = stack.start("api", "--port", str(port), log="api.log")
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: healthz(url) is not None or proc.poll() is not None, timeout=60, every=0.2)
    assert proc.poll() is None, stack.log("api.log")
    runs = httpx.get(f"{url}/v1/runs", headers=stack.auth(), timeout=10).json()["runs"]
    assert "api-run" in {r["name"] for r in runs}, runs
    stack.stop(proc, "api.log")


@real("worker")
def _worker(stack: Stack) -> None:
    proc = stack.start("worker", "--name", "documented-worker", log="worker.log")
    wait_for(lambda: "documented-worker" in worker_names(stack.url) or proc.poll() is not None,
             timeout=60, every=0.2)
    assert proc.poll() is None, stack.log("worker.log")
    # Two consumers now share the group: samples sent meanwhile are all scored.
    with stack.client("worker-run") as client:
        client.submit(1, [{"completion": f"sample number {i} of the worker test"} for i in range(20)])
        assert client.flush(30) and client.errors == []
    wait_for(scored(stack, "worker-run", 1, 20), timeout=60)
    stack.stop(proc, "worker.log")
    assert "documented-worker" not in worker_names(stack.url)  # it said goodbye


@real("worker", variant="--ray", slow=True, timeout=300)
def _worker_ray(stack: Stack) -> None:
    proc = stack.start("worker", "--ray", "1", log="ray-worker.log", RAY_TMPDIR=ray_tmpdir())
    wait_for(lambda: "ray-worker-0" in worker_names(stack.url) or proc.poll() is not None, timeout=240, every=1)
    assert proc.poll() is None, stack.log("ray-worker.log")
    stack.stop(proc, "ray-worker.log", timeout=90)
    assert "ray-worker-0" not in worker_names(stack.url)


@real("token", "local")
def _token_local(stack: Stack) -> None:
    r = stack.cli("token", "local")
    assert r.stdout.strip() == stack.token
    assert httpx.get(f"{stack.url}/v1/runs", headers=stack.auth(r.stdout.strip()), timeout=10).status_code == 200


@real("token", "create")
def _token_create(stack: Stack) -> None:
    token = stack.cli("token", "create", "--project", "docs").stdout.strip()
    assert token and token != stack.token
    r = httpx.get(f"{stack.url}/v1/runs", headers=stack.auth(token), timeout=10)
    assert r.status_code == 200 and r.json() == {"runs": []}  # project docs has no run yet


@real("token", "list")
def _token_list(stack: Stack) -> None:
    token = stack.cli("token", "create", "--project", "listed", "--name", "ci").stdout.strip()
    lines = stack.cli("token", "list").stdout.splitlines()
    mine = [line for line in lines if line.split()[1:3] == ["listed", "active"]]
    assert len(mine) == 1 and mine[0].endswith("ci"), lines
    assert token not in "\n".join(lines)  # never the secret


@real("token", "revoke")
def _token_revoke(stack: Stack) -> None:
    stack.cli("token", "create", "--project", "revoked")
    (line,) = [x for x in stack.cli("token", "list").stdout.splitlines() if x.split()[1] == "revoked"]
    stack.cli("token", "revoke", line.split()[0])
    (after,) = [x for x in stack.cli("token", "list").stdout.splitlines() if x.split()[1] == "revoked"]
    assert after.split()[2] == "revoked"
    missing = stack.cli("token", "revoke", "no-such-token", ok=False)
    assert missing.returncode == 1 and "no token 'no-such-token'" in missing.stderr


def _poison(stack: Stack, run: str) -> None:
    with stack.client(run) as client:
        client.submit(1, [{"id": "fine", "completion": "a fine answer"},
                          {"id": "bad", "completion": "POISON for the scorer"}])
        assert client.flush(30) and client.errors == []
    prefix = stack.env["JUDGESERVE_STREAM_PREFIX"]
    r = redis.Redis.from_url(stack.env["JUDGESERVE_REDIS_URL"])
    wait_for(lambda: any(f'"{run}"'.encode() in v for _, f in r.xrange(f"{prefix}:deadletter")
                         for v in f.values()), timeout=60, every=0.2)
    r.close()


@real("deadletter", "list")
def _deadletter_list(stack: Stack) -> None:
    _poison(stack, "dead-run")
    prefix, where = stack.env["JUDGESERVE_STREAM_PREFIX"], stack.env["JUDGESERVE_REDIS_URL"]
    r = stack.cli("deadletter", "list")
    (line,) = [x for x in r.stdout.splitlines() if "dead-run@1" in x]
    assert line.split()[2:4] == ["bad", "x2"] and "cannot score bad" in line, r.stdout
    assert r.stderr.strip().endswith(f"in {prefix}:deadletter at {where}"), r.stderr
    c = stack.cli("deadletter", "list", "--checkpoints")
    assert c.stdout == ""
    assert c.stderr.strip() == f"no dead letters (checkpoint jobs) in {prefix}:checkpoints:deadletter at {where}"


@real("deadletter", "requeue")
def _deadletter_requeue(stack: Stack) -> None:
    _poison(stack, "requeue-run")
    prefix = stack.env["JUDGESERVE_STREAM_PREFIX"]
    ids = [x.split()[0] for x in stack.cli("deadletter", "list").stdout.splitlines() if "requeue-run@1" in x]
    assert len(ids) == 1
    r = stack.cli("deadletter", "requeue", ids[0])
    assert r.stdout.startswith(f"requeued 1 from {prefix}:deadletter to {prefix}:samples at "), r.stdout
    # Back on the stream, it fails again (the scorer still refuses it) and comes back.
    assert ids[0] not in stack.cli("deadletter", "list").stdout
    wait_for(lambda: "requeue-run@1" in stack.cli("deadletter", "list").stdout, timeout=60, every=0.5)


# Long enough that a verbatim copy is a span over the memorized threshold (50 tokens).
TRAINING = [f"The quarterly report of the river authority number {i} says the northern dam holds "
            f"{100 + i} million cubic metres and the southern spillway was inspected in spring "
            f"by the engineers of district {i}, who found the gates sound and the sluices clear. "
            f"The western canal carried {20 + i} barges a day until the autumn floods closed the "
            f"lower locks for {i + 3} weeks, and the board voted to raise the embankment by "
            f"{i + 1} metres before the next winter storms arrive from the coast."
            for i in range(8)]


def _training_file(stack: Stack, name: str) -> Path:
    path = stack.root / name
    lines = [json.dumps({"text": t}) for t in TRAINING]
    path.write_text("\n".join([*lines[:4], json.dumps({"title": "no text field"}), *lines[4:]]) + "\n")
    return path


DETECTORS_MD = (ROOT / "docs" / "detectors.md").read_text()


def _shape(line: str, run: str, folder: str) -> str:
    """The line with its numbers, run name and index folder taken out."""
    return re.sub(r"\d+(?:[.,]\d+)*", "N", line.replace(folder, "DIR").replace(run, "RUN"))


@real("index", "build")
def _index_build(stack: Stack) -> None:
    data = _training_file(stack, "index-train.jsonl")
    r = stack.cli("index", "build", "--run", "index-run", str(data))
    indexed, skipped, wrote = r.stdout.splitlines()[-3:]
    assert indexed.startswith("indexed ") and "of 8 documents" in indexed and "'index-run'" in indexed, r.stdout
    assert skipped == "skipped 1 JSONL line(s) without a string 'text' field", r.stdout
    index_dir = Path(stack.env["JUDGESERVE_INDEX_DIR"])
    assert wrote.startswith(f"wrote {index_dir / 'index-run'}: "), r.stdout
    assert (index_dir / "index-run").is_dir()
    # docs/detectors.md shows the same lines (numbers, run name and folder aside).
    shown = re.search(r"the folder\nit wrote:\n\n```\n(.*?)```", DETECTORS_MD, re.S)
    assert shown, "docs/detectors.md no longer shows what index build prints"
    doc_dir = "/home/me/.local/share/judgeserve/indexes"
    assert [_shape(x, "my-run", doc_dir) for x in shown.group(1).splitlines()] == [
        _shape(x, "index-run", str(index_dir)) for x in (indexed, skipped, wrote)]


@real("rescore")
def _rescore(stack: Stack) -> None:
    # Samples copying the training data verbatim, scored before the run had an index.
    run = "rescore-run"
    with stack.client(run) as client:
        client.submit(1, [{"completion": t} for t in TRAINING[:3]], expected=3)
        assert client.flush(30) and client.errors == []
    wait_for(scored(stack, run, 1, 3), timeout=60)

    def memorized() -> list[Any]:
        samples = stack.get(f"/v1/runs/{run}/steps/1")["samples"]
        return [next((s["value"] for s in x["scores"] if s["scorer"] == "memorization.memorized"), None)
                for x in samples]

    assert memorized() == [None] * 3
    stack.cli("index", "build", "--run", run, str(_training_file(stack, "rescore-train.jsonl")))
    r = stack.cli("rescore", "--run", run, "--scorer", "memorization", timeout=120)
    assert f"queued 3 samples of run '{run}' for memorization" in r.stdout, r.stdout
    assert "processed 3" in r.stdout, r.stdout
    assert memorized() == [True] * 3
    unknown = stack.cli("rescore", "--run", run, "--scorer", "nonesuch", ok=False)
    assert unknown.returncode == 2 and "unknown scorer 'nonesuch'" in unknown.stderr


def _planted(stack: Stack, run: str) -> None:
    """Two checkpoints of 40 probes written into the stack's store: step 200 clearly
    better than step 100 on reference.semscore, the same otherwise."""
    from judgeserve.store import Store
    from judgeserve.testing.checkpoints import write_checkpoint

    rng = np.random.default_rng(7)
    probes = [f"p{i:02d}" for i in range(40)]
    store = Store(stack.env["JUDGESERVE_DATABASE_URL"])
    try:
        for step, level, loss in ((100, 0.3, 1.0), (200, 0.8, 0.5)):
            write_checkpoint(store, run, step, probes,
                             {"reference.semscore": level + rng.normal(0, 0.02, 40),
                              "repetition.loop": np.zeros(40), "length.tokens": np.full(40, 20)},
                             loss=loss)
    finally:
        store.close()


@real("best")
def _best(stack: Stack) -> None:
    _planted(stack, "best-run")
    lines = stack.cli("best", "--run", "best-run").stdout.splitlines()
    assert lines[0].startswith("run best-run: best: step 200, score "), lines
    as_json = json.loads(stack.cli("best", "--run", "best-run", "--json").stdout)
    assert as_json["best"]["step"] == 200
    missing = stack.cli("best", "--run", "no-such-run", ok=False)
    assert missing.returncode == 1 and "no run named 'no-such-run'" in missing.stderr


@real("compare")
def _compare(stack: Stack) -> None:
    _planted(stack, "compare-run")
    out = stack.cli("compare", "compare-run@100", "compare-run@200").stdout
    sem = next(line for line in out.splitlines() if line.startswith("reference.semscore"))
    assert sem.endswith("* b better"), out
    bare = stack.cli("compare", "compare-run@100", "200").stdout  # b: a step of a's run
    assert bare == out


@real("quality", "lint")
def _quality_lint(stack: Stack) -> None:
    out = stack.cli("quality", "lint").stdout.splitlines()
    assert any(x.startswith("metric reference.semscore: higher is better") for x in out), out
    assert any(x.startswith("gate ") for x in out), out
    bad = stack.root / "quality.yaml"
    bad.write_text("metrics:\n  - metric: reference.semscore\n    wieght: 1\n")
    r = stack.cli("quality", "lint", str(bad), ok=False)
    assert r.returncode == 1 and f"{bad}:3: metrics[0].wieght" in r.stderr, r.stderr


@real("quality", "schema")
def _quality_schema(stack: Stack) -> None:
    schema = json.loads(stack.cli("quality", "schema").stdout)
    assert "metrics" in schema["properties"]


@real("alerts", "lint")
def _alerts_lint(stack: Stack) -> None:
    out = stack.cli("alerts", "lint").stdout
    assert "loss_not_finite: threshold on nonfinite.train.loss (critical, notify)" in out.splitlines(), out
    bad = stack.root / "rules.yaml"
    bad.write_text("rules:\n  - name: x\n    type: threshold\n    metric: length.tokens\n    colour: red\n")
    r = stack.cli("alerts", "lint", str(bad), ok=False)
    assert r.returncode == 1 and f"{bad}:5:" in r.stderr and "colour" in r.stderr, r.stderr


@real("alerts", "schema")
def _alerts_schema(stack: Stack) -> None:
    schema = json.loads(stack.cli("alerts", "schema").stdout)
    assert "rules" in schema["properties"]


@real("rubric", "lint")
def _rubric_lint(stack: Stack) -> None:
    good = ROOT / "rubrics" / "helpfulness.yaml"
    assert stack.cli("rubric", "lint", str(good)).stdout.startswith(f"{good}: ok (helpfulness v")
    bad = stack.root / "mine.yaml"
    bad.write_text(good.read_text().replace("criteria:", "criterias:", 1))
    r = stack.cli("rubric", "lint", str(bad), ok=False)
    assert r.returncode == 1 and "criterias" in r.stderr and str(bad) in r.stderr, r.stderr


@real("rubric", "schema")
def _rubric_schema(stack: Stack) -> None:
    printed = json.loads(stack.cli("rubric", "schema").stdout)
    # docs/judge.md: the schema is also kept in docs/rubric.schema.json; they agree.
    assert printed == json.loads((ROOT / "docs" / "rubric.schema.json").read_text())


def fruit(i: int) -> str:
    """The toy judge's answer: 5 for banana, 1 for cherry."""
    from judgeserve.testing.toy_judge import BAD, GOOD

    return f"I would pick the {GOOD if i % 2 else BAD} today."


@real("calibrate", timeout=300)
def _calibrate(stack: Stack) -> None:
    from judgeserve.testing.toy_judge import cached_toy_judge

    rubric = stack.root / "rubrics" / "toy.yaml"
    labels = stack.root / "labels.jsonl"
    rows = [{"prompt": "Name a fruit.", "completion": fruit(i), "label": 5 if i % 2 else 1} for i in range(6)]
    labels.write_text("".join(json.dumps(x) + "\n" for x in rows))
    out = stack.root / "report.json"
    model = str(cached_toy_judge())
    r = stack.cli("calibrate", str(rubric), str(labels), "--backend", "transformers",
                  "--model", model, "--out", str(out))
    assert f"report: {out}" in r.stdout, r.stdout
    report = json.loads(out.read_text())
    assert report["rubric"] == "toy" and report["criteria"]["marker"]["exact_agreement"] == 1.0
    if LABELS:
        # With no file, the labels people made (here imported), by rubric name; the
        # report is kept in the store, where the rubric pages read it.
        stack.cli("labels", "import", str(_labelled(stack, "calibrate-run")))
        r = stack.cli("calibrate", "toy", "--backend", "transformers", "--model", model)
        assert "report kept in the store: /rubrics/toy shows it" in r.stdout, r.stdout


LABELS = ("labels", "import") in cli_commands()  # lands from the labels branch


def _labelled(stack: Stack, run: str, n: int = 6) -> Path:
    """``n`` samples of ``run`` scored by the stack, and a file of one person's labels of them."""
    with stack.client(run) as client:
        client.submit(1, [{"id": f"l{i}", "prompt": "Name a fruit.", "completion": fruit(i)}
                          for i in range(n)], expected=n)
        assert client.flush(30) and client.errors == []
    wait_for(scored(stack, run, 1, n), timeout=60)
    path = stack.root / f"{run}.labels.jsonl"
    path.write_text("".join(json.dumps({"run": run, "sample_id": f"l{i}", "rubric": "toy", "criterion": "marker",
                                        "label": 5 if i % 2 else 1, "labeller": "ann"}) + "\n"
                            for i in range(n)))
    return path


if ("judge", "tune") in cli_commands():  # lands from the tune branch

    @real("judge", "tune", slow=True, timeout=600)
    def _judge_tune(stack: Stack) -> None:
        from judgeserve.testing.toy_judge import cached_toy_judge

        stack.cli("labels", "import", str(_labelled(stack, "tune-run", 16)))
        r = stack.cli("judge", "tune", "toy", "--held-out", "0.25", "--seed", "1", "--max-steps", "10",
                      "--backend", "transformers", "--model", str(cached_toy_judge()), timeout=540)
        assert "held-out items" in r.stdout and "lora_path:" in r.stdout, r.stdout
        assert "report kept in the store: /rubrics/toy shows it" in r.stdout, r.stdout
        adapters = Path(stack.env["JUDGESERVE_DATA_DIR"]) / "adapters" / "toy"
        assert any(adapters.iterdir()), "no adapter saved under the data dir"
        none = stack.cli("judge", "tune", "helpfulness", ok=False)
        assert none.returncode == 2 and "/rubrics/helpfulness/label" in none.stderr, none.stderr


if LABELS:

    @real("labels", "import")
    def _labels_import(stack: Stack) -> None:
        path = _labelled(stack, "import-run")
        r = stack.cli("labels", "import", str(path))
        assert r.stdout.strip() == f"imported 6 labels from {path}", r.stdout
        bad = stack.root / "bad.labels.jsonl"
        first, second = path.read_text().splitlines()[:2]
        bad.write_text(first + "\n" + second.replace('"label": 5', '"label": 9') + "\n")
        r = stack.cli("labels", "import", str(bad), ok=False)
        assert r.returncode == 1 and f"{bad}:2: " in r.stderr and "nothing was stored" in r.stderr, r.stderr

    @real("labels", "export")
    def _labels_export(stack: Stack) -> None:
        stack.cli("labels", "import", str(_labelled(stack, "export-run")))
        out = stack.root / "exported.jsonl"
        r = stack.cli("labels", "export", "--rubric", "toy", "--out", str(out))
        assert f"exported {{}} labels to {out}".format(len(out.read_text().splitlines())) in r.stderr
        mine = [x for x in map(json.loads, out.read_text().splitlines()) if x["run"] == "export-run"]
        assert sorted((x["sample_id"], x["label"], x["completion"]) for x in mine) == [
            (f"l{i}", 5 if i % 2 else 1, fruit(i)) for i in range(6)]
        assert stack.cli("labels", "export", "--rubric", "toy").stdout == out.read_text()


@real("serve", slow=True, timeout=420)
def _serve(stack: Stack) -> None:
    import yaml

    from judgeserve.testing.toy_judge import cached_toy_judge

    port = free_port()
    config = stack.root / "serve.yaml"
    config.write_text(yaml.safe_dump({
        "http_options": {"host": "127.0.0.1", "port": port},
        "applications": [{
            "name": "judge", "route_prefix": "/judge", "import_path": "judgeserve.judge.serve:build_app",
            "args": {"backend": "transformers", "model": str(cached_toy_judge()), "max_batch_size": 4,
                     "options": {"threads": 1}},
            "deployments": [{"name": "JudgeDeployment", "ray_actor_options": {"num_cpus": 0.5},
                             "max_ongoing_requests": 16}],
        }],
    }))
    proc = stack.start("serve", "--config", str(config), "--num-cpus", "2", log="serve.log",
                       RAY_TMPDIR=ray_tmpdir())
    url = f"http://127.0.0.1:{port}/judge"

    def up() -> bool:
        assert proc.poll() is None, stack.log("serve.log")
        try:
            return httpx.get(f"{url}/health", timeout=5).json() == {"status": "ok"}
        except (httpx.HTTPError, ValueError):
            return False

    wait_for(up, timeout=300, every=1)
    stack.stop(proc, "serve.log", timeout=90)


@real("generate-worker", slow=True, timeout=300)
def _generate_worker(stack: Stack) -> None:
    from judgeserve.testing.tiny_policy import FRUITS, cached_tiny_policy, tiny_probes

    policy = cached_tiny_policy()
    proc = stack.start("generate-worker", "--name", "documented-generator", log="gen.log",
                       JUDGESERVE_GENERATOR="transformers",
                       JUDGESERVE_GENERATOR_BASE_MODEL=str(policy.base),
                       JUDGESERVE_GENERATOR_OPTIONS='{"threads": 1}')
    try:
        with stack.client("gen-run") as client:
            client.set_probes(tiny_probes(4), generation={"max_new_tokens": 8, "samples": 0})
            client.submit_checkpoint(100, policy.adapter("a"), kind="lora")
            client.submit_checkpoint(200, stack.root / "deleted-checkpoint", kind="lora")
            assert client.flush(30) and client.errors == []

        def state(step: int) -> str | None:
            r = httpx.get(f"{stack.url}/v1/runs/gen-run/checkpoints/{step}", headers=stack.auth(), timeout=10)
            return r.json()["state"] if r.status_code == 200 else None

        wait_for(lambda: state(100) == "scored" and state(200) == "failed", timeout=180, every=0.5)
        sample = stack.get("/v1/runs/gen-run/steps/100")["samples"][0]
        assert sample["completion"].split()[0] == FRUITS["a"]  # the adapter's weights spoke
        listed = stack.cli("deadletter", "list", "--checkpoints")
        assert "gen-run@200" in listed.stdout and "deleted-checkpoint" in listed.stdout, listed.stdout
    finally:
        stack.stop(proc, "gen.log", timeout=60)


@real("demo", slow=True, timeout=600)
def _demo(stack: Stack) -> None:
    r = stack.cli("demo", "--mode", "generate", "--steps", "200", "--every", "100", "--no-serve",
                  "--port", str(free_port()), timeout=540,
                  JUDGESERVE_DATABASE_URL=f"sqlite:///{stack.root / 'demo.db'}",
                  JUDGESERVE_STREAM_PREFIX=f"demo{uuid.uuid4().hex[:8]}", JUDGESERVE_SCORERS="[]")
    # A line per checkpoint, then which checkpoint to ship (or why none), and where the run is kept.
    assert re.search(r"^step +100 \| loss", r.stdout, re.M) and re.search(r"^step +200 \| loss", r.stdout, re.M), r.stdout
    assert re.search(r"^best: ", r.stdout, re.M) and "run `judgeserve up` and open" in r.stdout, r.stdout


@pytest.mark.parametrize(("path", "case"), [*REAL.values(), *VARIANTS])
def test_real_invocation(stack: Stack, path: tuple[str, ...], case: Case) -> None:
    try:
        case(stack)
    finally:
        stack.reap()
