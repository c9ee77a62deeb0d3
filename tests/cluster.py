"""A real Ray cluster of several nodes on this machine, for the scale-out tests.

Each node is what ``ray start`` makes on a machine of its own: the head (``ray start
--head``: GCS, dashboard, a raylet) and workers (``ray start --address=...``: a raylet
each), with one CPU each, a temp dir of its own and every port chosen free, so it runs
beside any other Ray on the machine. ``--block`` keeps each ``ray start`` in the
foreground, so a node is a process the test holds.

Everything the cluster starts (the nodes, Ray's workers and agents, and any driver
started with :meth:`RayCluster.popen`) carries a marker in its environment, which Ray
passes on to the processes it spawns; :meth:`RayCluster.close` kills them by pid — those
with the marker and every descendant of the nodes — and checks that none is left, so a
failing test leaves no Ray process behind (``ray stop`` would kill every Ray on the
machine, other people's too).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from .conftest import free_port

__all__ = ["RayCluster", "ray_cluster"]

MARK = "JUDGESERVE_TEST_CLUSTER"
RAY = str(Path(sys.executable).with_name("ray"))


@dataclass
class Node:
    name: str
    process: subprocess.Popen[bytes]
    temp_dir: Path
    node_manager_port: int
    log: Path

    def raylet(self) -> psutil.Process:
        for child in psutil.Process(self.process.pid).children(recursive=True):
            if child.name() == "raylet":
                return child
        raise AssertionError(f"node {self.name} has no raylet (see {self.log})")


class RayCluster:
    """Nodes started with ``ray start``; ``address`` for drivers, ``dashboard`` for the
    state API (which nodes are alive, which actor runs where)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.id = uuid.uuid4().hex
        token = secrets.token_hex(24)
        self.headers = {"Authorization": f"Bearer {token}"}
        # Token auth on, with a token of this cluster's own (not ~/.ray/auth_token).
        self.env = {
            **os.environ,
            MARK: self.id,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": token,
            "RAY_USAGE_STATS_ENABLED": "0",
        }
        self.port = free_port()
        self.dashboard_port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.dashboard = f"http://127.0.0.1:{self.dashboard_port}"
        self.nodes: list[Node] = []
        self.drivers: list[subprocess.Popen[bytes]] = []
        self._seen: dict[int, float] = {}  # pid -> create_time of every process seen as ours

    # -- nodes -------------------------------------------------------------------------------

    def _start(self, name: str, *args: str, cpus: int = 1) -> Node:
        temp_dir = self.root / name
        temp_dir.mkdir(parents=True)
        log = self.root / f"{name}.log"
        nm_port = free_port()
        command = [
            RAY, "start", *args, "--block", "--disable-usage-stats",
            "--node-ip-address=127.0.0.1", f"--num-cpus={cpus}", f"--temp-dir={temp_dir}",
            f"--node-manager-port={nm_port}", f"--object-manager-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}",
            f"--object-store-memory={200 * 2**20}",
        ]
        with log.open("ab") as out:
            process = subprocess.Popen(command, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        node = Node(name, process, temp_dir, nm_port, log)
        self.nodes.append(node)
        return node

    def start_head(self, resources: dict[str, float] | None = None) -> Node:
        extra = [f"--resources={json.dumps(resources)}"] if resources else []
        return self._start(
            "head", "--head", f"--port={self.port}", "--include-dashboard=true",
            "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}",
            f"--ray-client-server-port={free_port()}", *extra,
        )

    def add_node(self, name: str) -> Node:
        return self._start(name, f"--address={self.address}")

    def wait_alive(self, n: int, timeout: float = 180) -> list[dict[str, Any]]:
        """Wait until exactly ``n`` nodes are alive; returns them (state API rows)."""
        deadline = time.monotonic() + timeout
        alive: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.process.poll() is not None and node.process.returncode != 0:
                    raise AssertionError(f"ray start of {node.name} exited: {node.log.read_text()[-3000:]}")
            try:
                alive = [x for x in self.state("nodes") if x["state"] == "ALIVE"]
            except httpx.HTTPError:
                alive = []
            if len(alive) == n:
                return alive
            time.sleep(0.5)
        raise AssertionError(f"{len(alive)} nodes alive after {timeout}s, not {n}")

    def state(self, what: str) -> list[dict[str, Any]]:
        """Rows of Ray's state API (``nodes``, ``actors``...), as ``ray list`` shows them."""
        r = httpx.get(f"{self.dashboard}/api/v0/{what}", params={"detail": 1, "limit": 10_000},
                      headers=self.headers, timeout=30)
        r.raise_for_status()
        rows: list[dict[str, Any]] = r.json()["data"]["result"]["result"]
        return rows

    def popen(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """A driver process (a judgeserve command) joining the cluster, killed with it."""
        with log.open("ab") as out:
            p = subprocess.Popen(args, env={**self.env, **(env or {})}, stdout=out,
                                 stderr=subprocess.STDOUT, start_new_session=True)
        self.drivers.append(p)
        self._remember()
        return p

    # -- processes ---------------------------------------------------------------------------

    def processes(self) -> list[psutil.Process]:
        """Every live process of this cluster: marked ones, the nodes and their descendants."""
        found: dict[int, psutil.Process] = {}
        roots = [n.process.pid for n in self.nodes] + [d.pid for d in self.drivers]
        for pid in roots:
            try:
                p = psutil.Process(pid)
                found[pid] = p
                found.update({c.pid: c for c in p.children(recursive=True)})
            except psutil.NoSuchProcess:
                pass
        for p in psutil.process_iter():
            try:
                if p.pid not in found and p.environ().get(MARK) == self.id:
                    found[p.pid] = p
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                pass
        # Reparented ones (their raylet died) no longer descend from a node: the ones seen
        # before still count, if the pid was not reused since.
        for pid, created in self._seen.items():
            try:
                p = psutil.Process(pid)
                if pid not in found and p.create_time() == created:
                    found[pid] = p
            except psutil.NoSuchProcess:
                pass
        for p in found.values():
            try:
                self._seen.setdefault(p.pid, p.create_time())
            except psutil.NoSuchProcess:
                pass
        return [p for p in found.values() if _alive(p)]

    def _remember(self) -> None:
        self.processes()

    def kill_raylet(self, node: Node) -> None:
        """SIGKILL a node's raylet, as an OOM kill would; the rest of the node (its
        workers, agents) goes down with it, each when it notices (a worker busy with a
        task may finish it first)."""
        self._remember()
        node.raylet().kill()

    def kill_node(self, node: Node) -> None:
        """SIGKILL a node's raylet and every process of the node at the same moment, as a
        lost machine would: no task running there gets to finish."""
        self._remember()
        raylet = node.raylet()
        everyone = [raylet, *psutil.Process(node.process.pid).children(recursive=True)]
        for p in everyone:
            _signal(p.pid, signal.SIGKILL)

    def close(self) -> None:
        """Kill every process of the cluster by pid; fail if any survives."""
        for d in self.drivers:  # drivers first: a driver outliving its GCS logs for a minute
            _signal(d.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while any(d.poll() is None for d in self.drivers) and time.monotonic() < deadline:
            time.sleep(0.1)
        deadline = time.monotonic() + 30
        left = self.processes()
        while left and time.monotonic() < deadline:
            for p in left:
                _signal(p.pid, signal.SIGKILL)
            time.sleep(0.2)
            left = self.processes()
        for p in [*(n.process for n in self.nodes), *self.drivers]:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
        if left:
            raise AssertionError(f"Ray processes left behind: {[(p.pid, p.name()) for p in left]}")


def _alive(p: psutil.Process) -> bool:
    try:
        return bool(p.is_running() and p.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


@contextmanager
def ray_cluster(
    root: Path, workers: int = 1, head_resources: dict[str, float] | None = None
) -> Iterator[RayCluster]:
    """A head (offering ``head_resources`` besides its CPU) and ``workers`` more nodes, one
    CPU each, all alive; torn down on exit."""
    cluster = RayCluster(root)
    try:
        cluster.start_head(head_resources)
        cluster.wait_alive(1)
        for i in range(workers):
            cluster.add_node(f"node{i + 2}")
        cluster.wait_alive(1 + workers)
        cluster.processes()  # remember them all while they descend from their nodes
        yield cluster
    finally:
        cluster.close()
