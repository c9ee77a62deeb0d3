"""``JudgeClient``: the synchronous SDK a training loop calls."""

from __future__ import annotations

import itertools
import logging
import math
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from pydantic import ValidationError

from ..exceptions import APIError, ClientError, JournalError
from ..local_token import token_for
from ..probes import GenerationConfig, Probe, ProbeSet, load_probes
from ..schema import (
    MAX_SAMPLES_PER_REQUEST,
    RUN_NAME_PATTERN,
    Alert,
    CheckpointIn,
    CheckpointKind,
    MetricsIn,
    SampleBatch,
    SampleIn,
    SummaryIn,
    rubric_name_problem,
)
from ..settings import get_settings
from .journal import Journal, network_filesystem

__all__ = ["JudgeClient"]

log = logging.getLogger(__name__)
AGENT_SIGNALS = {signal.SIGUSR1, signal.SIGUSR2}
SampleLike = Mapping[str, Any] | SampleIn


def _sample_dict(s: SampleLike, new_id: Callable[[], str]) -> dict[str, Any]:
    if isinstance(s, SampleIn):
        d = s.model_dump(exclude_defaults=True)
        d["id"] = s.id
    elif isinstance(s, Mapping):
        d = {k: v for k, v in s.items() if k not in ("run", "step", "checkpoint", "created")}
    else:
        raise TypeError(f"a sample must be a dict or a Sample, not {type(s).__name__}")
    if "completion" not in d:
        raise ClientError("every sample needs a 'completion'")
    if not d.get("id"):
        # Made here, on submit, so every retry of this sample carries the same id.
        d["id"] = new_id()
    return d


def _where(loc: tuple[int | str, ...], items: list[dict[str, Any]], start: int) -> str:
    if len(loc) >= 2 and loc[0] == "samples" and isinstance(loc[1], int):
        i = start + loc[1]
        field = ".".join(str(p) for p in loc[2:])
        return f"sample {i} (id {items[i].get('id')!r})" + (f": {field}" if field else "")
    return ".".join(str(p) for p in loc)


def _check_batch(body: dict[str, Any], items: list[dict[str, Any]]) -> None:
    """Refuse, here in the trainer, what the API would refuse: the schema's own models and
    limits, request by request as the agent will send them."""
    for start in range(0, len(items), MAX_SAMPLES_PER_REQUEST):
        try:
            SampleBatch.model_validate({**body, "samples": items[start : start + MAX_SAMPLES_PER_REQUEST]})
        except ValidationError as e:
            problems = "; ".join(f"{_where(err['loc'], items, start)}: {err['msg']}" for err in e.errors())
            raise ClientError(f"invalid samples, none submitted: {problems}") from None


class JudgeClient:
    """Send generations and trainer metrics to judgeserve without waiting on it.

    ``submit`` and ``log_metrics`` append to a local journal and return; a separate
    agent process batches, sends, retries with backoff and keeps the journal while the
    API is unreachable, so the trainer's thread never waits on the network, and what
    was submitted survives the trainer crashing.
    """

    def __init__(
        self,
        url: str | None = None,
        run: str = "default",
        token: str | None = None,
        rubrics: list[str] | None = None,
        *,
        timeout: float = 10.0,
        spool_dir: str | Path | None = None,
        max_backoff_s: float = 30.0,
        orphan_grace_s: float = 120.0,
    ) -> None:
        settings = get_settings()
        if not isinstance(run, str) or not re.fullmatch(RUN_NAME_PATTERN, run):
            # A run name is a name: it also names the spool folder, so never a path.
            raise ClientError(
                f"invalid run name {run!r}: letters, digits, '.', '_' and '-', starting with a "
                "letter or digit, at most 128 characters"
            )
        for name in rubrics or []:
            # Names, looked up on the server; whether each exists the API says (422).
            if problem := rubric_name_problem(name):
                raise ClientError(problem)
        self.url = (url or settings.api_url).rstrip("/")
        self.run = run
        self.rubrics = list(rubrics) if rubrics is not None else None
        # Without a token, an API on this machine takes the local one its first start made.
        token = token or settings.api_token or token_for(self.url, settings.data_dir)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        directory = Path(spool_dir) if spool_dir else settings.spool_dir
        remote = network_filesystem(directory.parent if not directory.exists() else directory)
        if remote:
            log.warning(
                "judgeserve: the spool directory %s is on %s, a network filesystem: its locks do "
                "not hold across hosts, so clients of one run on two hosts can deliver or delete "
                "each other's journals. Set JUDGESERVE_SPOOL_DIR (or spool_dir=) to a local disk.",
                directory, remote,
            )
        # Locked from the start: no other agent of this run can adopt it while we live.
        self.journal = Journal(directory / run, uuid.uuid4().hex)
        # Ids are this client's random prefix plus a counter: unique in the run, and cheap.
        counter = itertools.count()
        prefix = self.journal.files.name[:16]
        self._new_id: Callable[[], str] = lambda: f"{prefix}-{next(counter)}"
        env = {**os.environ, "JUDGESERVE_AGENT_TOKEN": token or ""}
        # Lives as long as the client: the agent's stdout/stderr.
        self._agent_log = open(self.journal.files.log, "ab")  # noqa: SIM115
        # The agent's signals stay blocked until it has installed its handlers (it unblocks
        # them itself); otherwise an early flush() would kill it with a default SIGUSR1.
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, AGENT_SIGNALS)
        try:
            self._agent = self._spawn_agent(env, timeout, max_backoff_s, orphan_grace_s)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        self._closed = False
        self.probe_set: ProbeSet | None = None  # the last one set_probes sent

    def _spawn_agent(
        self, env: dict[str, str], timeout: float, max_backoff_s: float, orphan_grace_s: float
    ) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                sys.executable, "-m", "judgeserve.client.agent",
                "--dir", str(self.journal.files.directory),
                "--id", self.journal.files.name,
                "--lock-fd", str(self.journal.lock_fd),
                "--url", self.url,
                "--parent", str(os.getpid()),
                "--timeout", str(timeout),
                "--max-backoff", str(max_backoff_s),
                "--orphan-grace", str(orphan_grace_s),
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._agent_log,
            stderr=subprocess.STDOUT,
            pass_fds=(self.journal.lock_fd,),  # the agent holds the journal's lock after us
            start_new_session=True,  # Ctrl-C on the trainer must not kill delivery mid-way
        )

    def submit(
        self,
        step: int,
        samples: Iterable[SampleLike],
        checkpoint: str | None = None,
        *,
        expected: int | None = None,
    ) -> list[str]:
        """Queue samples generated at ``step``; returns their ids (made here if absent).

        ``expected``: how many samples ``step`` will have in all (these and any sent
        before), when known; its alert rules then run as soon as that many are scored,
        rather than once no sample arrived for a while (``checkpoint_idle_s``).
        """
        self._check_open()
        items = [_sample_dict(s, self._new_id) for s in samples]
        if not items:
            return []
        body: dict[str, Any] = {"step": int(step), "samples": items}
        if checkpoint is not None:
            body["checkpoint"] = str(checkpoint)
        if expected is not None:
            body["expected"] = int(expected)
        if self.rubrics is not None:
            body["rubrics"] = self.rubrics
        _check_batch({k: v for k, v in body.items() if k != "samples"}, items)
        self.journal.append({"path": f"/v1/runs/{self.run}/samples", "body": body})
        return [d["id"] for d in items]

    def set_probes(
        self,
        probes: str | Path | Iterable[Probe | Mapping[str, Any] | str] | ProbeSet,
        generation: GenerationConfig | Mapping[str, Any] | None = None,
    ) -> str:
        """Store the run's probe set on the server (checkpoint mode: what the generator
        completes at every submitted checkpoint); returns its version (content hash).

        ``probes``: a JSONL probe file, probes / dicts / prompt strings, or a
        :class:`~judgeserve.probes.ProbeSet`; ``generation``: the decoding settings
        (``max_new_tokens``, ``samples``, ``temperature``, ``seed`` ...). Checked here, so
        a bad set fails in the trainer at once; delivered like ``submit``.
        """
        self._check_open()
        if isinstance(probes, ProbeSet):
            probe_set = probes if generation is None else probes.model_copy(
                update={"generation": GenerationConfig.model_validate(generation)}
            )
        else:
            items = load_probes(
                probes if isinstance(probes, (str, Path)) else [
                    dict(p) if isinstance(p, Mapping) else p for p in probes
                ]
            )
            probe_set = ProbeSet(
                probes=items,
                generation=GenerationConfig.model_validate(generation or {}),
            )
        body = probe_set.model_dump(mode="json")
        self.journal.append({"method": "PUT", "path": f"/v1/runs/{self.run}/probes", "body": body})
        self.probe_set = probe_set
        return probe_set.version()

    def submit_checkpoint(
        self,
        step: int,
        path: str | os.PathLike[str],
        *,
        kind: CheckpointKind = "lora",
        base_model: str | None = None,
        probe_set: str | None = None,
    ) -> None:
        """Say that a checkpoint was saved at ``path`` (checkpoint mode): the server
        generates the run's probe set with it and scores the completions.

        ``path`` is the folder the trainer wrote (for a PEFT model, the adapter folder),
        made absolute here, or an fsspec URL (``s3://...``); the generator must be able
        to read it. ``kind``: ``"lora"`` (an adapter) or ``"full"`` (a whole model).
        ``probe_set``: a version ``set_probes`` returned (default: the run's current
        set). Returns at once; the job is delivered like ``submit``.
        """
        self._check_open()
        where = os.fspath(path)
        if "://" not in where:
            where = os.path.abspath(where)
        try:
            body = CheckpointIn(
                step=int(step), path=where, kind=kind, base_model=base_model, probe_set=probe_set
            ).model_dump(mode="json", exclude_none=True)
        except ValueError as e:
            raise ClientError(f"invalid checkpoint: {e}") from e
        self.journal.append({"path": f"/v1/runs/{self.run}/checkpoints", "body": body})

    def checkpoints(self) -> list[dict[str, Any]]:
        """The run's submitted checkpoints and their job states, fetched now."""
        resp = self._get("/checkpoints")
        if resp.status_code == 404:
            return []
        jobs: list[dict[str, Any]] = resp.json()["checkpoints"]
        return jobs

    def log_metrics(self, step: int, **values: float) -> None:
        """Queue trainer metrics (loss, learning_rate, ...) for ``step``."""
        self._check_open()
        if values:
            body = {"step": int(step), "values": {k: _metric(v) for k, v in values.items()}}
            try:
                MetricsIn.model_validate(body)
            except ValidationError as e:
                problems = "; ".join(".".join(map(str, err["loc"])) + f": {err['msg']}" for err in e.errors())
                raise ClientError(f"invalid metrics, none logged: {problems}") from None
            self.journal.append({"path": f"/v1/runs/{self.run}/metrics", "body": body})

    def log_summary(self, **values: float) -> None:
        """Queue values of the whole run rather than of a step (run time, FLOPs, final
        loss ...): shown with the run, never drawn as a series. A name sent again
        replaces its value."""
        self._check_open()
        if values:
            body = {"values": {k: _metric(v) for k, v in values.items()}}
            try:
                SummaryIn.model_validate(body)
            except ValidationError as e:
                problems = "; ".join(".".join(map(str, err["loc"])) + f": {err['msg']}" for err in e.errors())
                raise ClientError(f"invalid summary, none logged: {problems}") from None
            self.journal.append({"path": f"/v1/runs/{self.run}/summary", "body": body})

    @property
    def errors(self) -> list[ClientError]:
        """What could not be delivered, and why: an :class:`APIError` per sample (or
        request) the API refused for good, with ``samples`` naming them, or for a token it
        refused (those requests are kept and retried); a :class:`JournalError` for a
        journal line that could not be read back."""
        out: list[ClientError] = []
        for e in self.journal.errors():
            if e.get("status") is None:
                out.append(JournalError(e["detail"]))
            else:
                out.append(APIError(e["status"], e["detail"], samples=e.get("samples") or []))
        return out

    def _get(self, path: str, params: dict[str, str] | None = None) -> httpx.Response:
        try:
            resp = self._http.get(f"/v1/runs/{self.run}{path}", params=params or {})
        except httpx.HTTPError as e:
            raise ClientError(f"judgeserve unreachable at {self.url}: {e}") from e
        if resp.status_code >= 400 and resp.status_code != 404:
            raise APIError(resp.status_code, resp.text)
        return resp

    def alerts(self, state: str | None = "open") -> list[Alert]:
        """Alerts of this run, fetched now (raises on an unreachable API)."""
        resp = self._get("/alerts", {"state": state} if state else None)
        return [Alert.model_validate(a) for a in resp.json()["alerts"]]

    def wait(self, step: int, timeout: float | None = 120.0) -> bool:
        """Wait until ``step`` is scored: everything submitted so far is delivered and the
        step's checkpoint is complete and evaluated (its alert rules ran), so that
        :meth:`alerts` then shows what it raised. False on timeout.

        A checkpoint is complete once it has the ``expected`` samples ``submit`` was told
        of, else once none arrived for the server's ``checkpoint_idle_s`` (30 s): pass
        ``expected`` to wait only as long as scoring takes.
        """
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        if not self.flush(left()):
            return False
        pause = 0.05
        while True:
            try:
                resp: httpx.Response | None = self._get(f"/steps/{int(step)}", {"limit": "1"})
            except APIError as e:
                if e.status < 500:
                    raise
                resp = None  # the API or its store is restarting: ask again
            except ClientError:
                resp = None  # unreachable for now, as flush() allowed
            if resp is not None and resp.status_code == 200 and (
                resp.json()["evaluation"]["evaluated"] is not None
            ):
                return True
            remaining = left()
            if remaining is not None and remaining <= 0:
                return False
            time.sleep(pause if remaining is None else min(pause, remaining))
            pause = min(pause * 2, 1.0)

    def metrics(self) -> dict[str, list[dict[str, Any]]]:
        """Every metric's series over steps ({} while the run has none yet)."""
        resp = self._get("/metrics")
        if resp.status_code == 404:
            return {}
        series: dict[str, list[dict[str, Any]]] = resp.json()["metrics"]
        return series

    def best(self) -> dict[str, Any] | None:
        """The run's best checkpoint by quality (``GET /v1/runs/{run}/best``): ``best``
        (step, score, CI), ``indistinguishable`` steps, every checkpoint's score and gates;
        None while the run does not exist yet."""
        resp = self._get("/best")
        if resp.status_code == 404:
            return None
        found: dict[str, Any] = resp.json()
        return found

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until everything submitted so far is delivered; False on timeout."""
        target = self.journal.position
        deadline = None if timeout is None else time.monotonic() + timeout
        self._signal(signal.SIGUSR1)  # retry now, not after the backoff
        while self.journal.delivered() < target:
            if self._agent.poll() is not None:
                return False
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout: float | None = 30.0) -> None:
        """Flush, then stop the agent; what could not be sent stays on disk for the next client."""
        if self._closed:
            return
        self._closed = True
        delivered = self.flush(timeout)
        self._signal(signal.SIGUSR2 if delivered else signal.SIGTERM)
        try:
            self._agent.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._agent.kill()
            self._agent.wait()
        self.journal.close()
        self._agent_log.close()
        if delivered:
            self.journal.files.log.unlink(missing_ok=True)
        else:
            log.warning("judgeserve: undelivered requests stay in %s (%s.*)",
                        self.journal.files.directory, self.journal.files.name)
        self._http.close()

    def _signal(self, signum: int) -> None:
        if self._agent.poll() is None:
            self._agent.send_signal(signum)

    def _check_open(self) -> None:
        if self._closed:
            raise ClientError("this JudgeClient is closed")

    def __enter__(self) -> JudgeClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _metric(value: float) -> float | str:
    # JSON has no NaN or infinity (orjson writes null): send them by name, so a diverged
    # loss arrives as what it is and the alert says "NaN".
    f = float(value)
    if math.isfinite(f):
        return f
    return "nan" if math.isnan(f) else ("inf" if f > 0 else "-inf")
