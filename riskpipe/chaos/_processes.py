"""The processes a chaos run owns: its servers and its workers, each by PID."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from riskpipe.chaos._proxy import Cut, TcpProxy
from riskpipe.server import NatsCluster, NatsServer, reserve_ports

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

__all__ = ["Servers", "WorkerProcess", "stop_workers"]


class WorkerProcess:
    """One ``riskpipe worker`` process, logging JSON to a file of its own; killed and restarted.

    A restart is a new process with the same name and log file, as a
    supervisor (systemd, Kubernetes) would bring a crashed worker back.
    """

    def __init__(self, name: str, env: Mapping[str, str], log: Path) -> None:
        self.name = name
        self.env = dict(env)
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False
        self.starts = 0

    @property
    def pid(self) -> int | None:
        """The running process's id."""
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def exited(self) -> int | None:
        """The exit status if the process ended by itself or was killed (``None``: running)."""
        return None if self.proc is None else self.proc.poll()

    def start(self) -> None:
        """Start the worker (its output appended to its log)."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "riskpipe", "worker", "--no-http"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.paused = False
        self.starts += 1

    def kill(self) -> None:
        """SIGKILL, as a crash would; reaped."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.paused = False

    def pause(self) -> None:
        """SIGSTOP: the process stays, frozen, holding what it held."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        """SIGCONT: a zombie wakes up."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
        self.paused = False


def stop_workers(workers: list[WorkerProcess], timeout: float = 30.0) -> None:
    """Stop every worker at once: SIGTERM (a clean leave) to all, one shared wait, then SIGKILL.

    Stopping them one after another would wait up to ``timeout`` for each;
    together, the slowest one sets the time.
    """
    running = [w.proc for w in workers if w.proc is not None and w.proc.poll() is None]
    for worker in workers:
        if worker.paused:
            worker.resume()  # a stopped process cannot act on SIGTERM
    for proc in running:
        proc.terminate()
    deadline = time.monotonic() + timeout
    for proc in running:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _single(data_dir: Path, auth: Path | None) -> Path | None:
    """The config of a single node that takes its users from ``auth`` (copied beside it)."""
    if auth is None:
        return None
    data_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(auth, data_dir / auth.name)
    config = data_dir / "server.conf"
    config.write_text(f'server_name: chaos\njetstream: enabled\ninclude "./{auth.name}"\n')
    return config


class Servers:
    """One node, or a cluster of them: each killed, paused and brought back by index."""

    def __init__(
        self,
        data_dir: Path,
        nodes: int,
        *,
        auth: Path | None = None,
        env: Mapping[str, str] | None = None,
        logs: Path | None = None,
    ) -> None:
        # not advertised: a worker behind its proxies must not find a way around them
        self.cluster = (
            NatsCluster(
                data_dir=data_dir,
                size=nodes,
                advertise=False,
                include=auth,
                env=env,
                log_dir=logs,
            )
            if nodes > 1
            else None
        )
        self.nodes = (
            self.cluster.nodes
            if self.cluster is not None
            else [
                NatsServer(
                    data_dir=data_dir,
                    config_file=_single(data_dir, auth),
                    env=env,
                    log_file=logs / "nats.log" if logs is not None else None,
                )
            ]
        )
        self.paused: set[int] = set()
        self.down: set[int] = set()
        self.routes: dict[tuple[int, int], TcpProxy] = {}
        """On a cluster, the proxy node ``i`` dials node ``j``'s routes through."""
        self.isolated: set[int] = set()
        """Nodes cut off from the others (their routes cut both ways)."""

    async def start_routes(self) -> None:
        """On a cluster, put a proxy on every route, each way, before the nodes start.

        Node ``i`` dials node ``j`` only through proxy ``(i, j)``, and each node
        tells the others to dial a port nobody listens on, so no node finds a
        way around a cut (nats-server dials a node it hears of from another).
        """
        if self.cluster is None:
            return
        host = self.cluster.host
        ports = self.cluster.reserve_routes()
        for i in range(len(self.nodes)):
            for j in range(len(self.nodes)):
                if i != j:
                    proxy = TcpProxy(host, ports[j])
                    await proxy.start()
                    self.routes[i, j] = proxy
        nowhere = reserve_ports(host, len(self.nodes))
        routes = self.routes
        self.cluster.routes_of = lambda i: [
            f"nats-route://{host}:{proxy.port}" for (a, _), proxy in routes.items() if a == i
        ]
        self.cluster.route_advertise_of = lambda i: f"{host}:{nowhere[i]}"

    async def isolate(self, index: int, how: Cut) -> None:
        """Cut node ``index``'s routes to and from every other node, ``how``."""
        for (i, j), proxy in self.routes.items():
            if index in (i, j):
                await proxy.cut(how)
        self.isolated.add(index)

    async def reconnect(self, index: int) -> None:
        """Let node ``index``'s routes through again."""
        self.isolated.discard(index)
        for (i, j), proxy in self.routes.items():
            if index in (i, j) and not ({i, j} & self.isolated):
                await proxy.heal()

    async def stop_routes(self) -> None:
        """Stop the route proxies (after the nodes)."""
        for proxy in self.routes.values():
            await proxy.stop()

    @property
    def url(self) -> str:
        """Every node's client URL, comma-separated."""
        return ",".join(node.url for node in self.nodes)

    def start(self) -> None:
        """Start every node (a cluster: until it has a meta leader).

        Raises:
            ServerStartError: a node did not start.
        """
        if self.cluster is not None:
            self.cluster.start()
        else:
            self.nodes[0].start()

    def index_of(self, server_name: str) -> int | None:
        """The index of the node a cluster calls ``server_name`` (``None``: unknown)."""
        if self.cluster is None:
            return 0
        try:
            return self.nodes.index(self.cluster.node_named(server_name))
        except KeyError:
            return None

    def kill(self, index: int) -> None:
        """SIGKILL node ``index``."""
        self.resume(index)
        self.nodes[index].kill()
        self.down.add(index)

    def restart(self, index: int) -> None:
        """Start a killed node again, on its ports and store.

        Raises:
            ServerStartError: it did not come back.
        """
        node = self.nodes[index]
        if self.cluster is not None:
            self.cluster.restart(node, timeout=30.0)
        else:
            node.start(timeout=30.0)
        self.down.discard(index)

    def rolling_restart(self) -> None:
        """Restart every node in lame duck mode, one at a time, each back before the next.

        Raises:
            ServerStartError: a node did not come back.
        """
        if self.cluster is None:
            raise ValueError("a rolling restart needs a cluster")
        self.cluster.rolling_restart(timeout=60.0)

    def pause(self, index: int) -> None:
        """SIGSTOP node ``index``."""
        if (pid := self.nodes[index].pid) is not None:
            os.kill(pid, signal.SIGSTOP)
            self.paused.add(index)

    def resume(self, index: int) -> None:
        """SIGCONT node ``index``."""
        if index in self.paused and (pid := self.nodes[index].pid) is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.paused.discard(index)

    def stop(self) -> None:
        """Stop every node (paused ones are woken first)."""
        for index in list(self.paused):
            self.resume(index)
        for node in self.nodes:
            node.stop()
