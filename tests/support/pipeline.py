"""Driving the pipeline in tests: worker processes, in-process runs, invariant checks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client import CollectorRegistry

from riskpipe.demo import POISON, demo_evidence
from riskpipe.settings import Settings
from riskpipe.worker import Worker

if TYPE_CHECKING:
    from collections.abc import Iterable

    from eventstore import CloudEvent, EventStore

__all__ = [
    "Streams",
    "WorkerProcess",
    "check_invariants",
    "demo_run",
    "process_alive",
    "read_streams",
    "run_worker",
]


async def demo_run(store: EventStore, url: str, events: int = 300) -> set[int]:
    """Demo evidence and the demo's poison messages, scored by a real worker; the poison seqs."""
    rng = random.Random(7)  # noqa: S311 - sample data, not secrets
    results = await store.append_many(demo_evidence(rng, events=events))
    assert not [r for r in results if isinstance(r, Exception)]
    poison = set()
    for n, (tenant, entity, payload) in enumerate(POISON):
        stored = await store.append_unchecked(
            "evidence", tenant, entity, payload, msg_id=f"poison:{n}"
        )
        poison.add(stored.sequence)
    await run_worker(store, url)
    return poison


async def run_worker(store: EventStore, url: str, **overrides: Any) -> Worker:
    """Run a worker in this process until nothing is pending; return it (for its metrics)."""
    settings = Settings(nats_url=url, fetch_timeout=0.2, **overrides)
    worker = Worker(store, settings, CollectorRegistry())
    async with asyncio.timeout(60):
        await worker.run(asyncio.Event(), until_idle=True, http=False)
    return worker


def process_alive(pid: int) -> bool:
    """Whether a process with this PID exists (signal 0 checks without sending)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class WorkerProcess:
    """A ``riskpipe worker`` in its own process, owned by PID: started, stopped, killed, paused.

    With ``processes`` > 1 that process is the supervisor of as many workers,
    whose log lines come through its stderr too.
    """

    def __init__(  # noqa: PLR0913 - the URL, then keyword-only options
        self,
        url: str,
        *,
        env: dict[str, str] | None = None,
        until_idle: bool = False,
        http: bool = False,
        processes: int = 1,
        args: tuple[str, ...] = (),
    ) -> None:
        self.url = url
        self.args = args
        """More ``riskpipe worker`` flags, e.g. ``("--shadow", "v2")``."""
        self.env = {
            **os.environ,
            "RISKPIPE_NATS_URL": url,
            "RISKPIPE_LOG_FORMAT": "json",
            **(env or {}),
        }
        self.until_idle = until_idle
        self.http = http
        self.proc: subprocess.Popen[bytes] | None = None
        self.lines: list[dict[str, Any]] = []
        self._started = threading.Event()
        self._logged = threading.Condition()
        self.processes = processes
        self._reader: threading.Thread | None = None

    def start(self, timeout: float = 20.0, *, wait: bool = True) -> None:
        """Start the worker; return once its partitions have started (at once if not ``wait``).

        With ``http``, it serves on a free port (see the ``worker.http`` log line).
        """
        args = [sys.executable, "-m", "riskpipe", "worker"]
        args += ["--http-port", "0"] if self.http else ["--no-http"]
        if self.until_idle:
            args.append("--until-idle")
        if self.processes != 1:
            args += ["--processes", str(self.processes)]
        args += self.args
        self._started.clear()
        self.proc = subprocess.Popen(
            args,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._reader.start()
        if wait and not self._started.wait(timeout):
            self.kill()
            raise RuntimeError(f"worker did not start: {self.lines[-5:]}")

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        with proc.stderr:
            for raw in proc.stderr:
                try:
                    line = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    line = {"event": raw.decode("utf-8", "replace").rstrip()}
                with self._logged:
                    self.lines.append(line)
                    self._logged.notify_all()
                if line.get("event") == "worker.started":
                    self._started.set()

    def logged(self, name: str, timeout: float = 30.0) -> dict[str, Any]:
        """The first log line with event ``name``, once the worker has written it.

        Raises:
            AssertionError: it did not within ``timeout`` seconds.
        """
        with self._logged:
            if not self._logged.wait_for(lambda: bool(self.events(name)), timeout):
                raise AssertionError(f"no {name} line within {timeout}s: {self.lines[-5:]}")
            return self.events(name)[0]

    def events(self, name: str, projection: str | None = "risk") -> list[dict[str, Any]]:
        """The worker's log lines with event ``name``: of ``projection``, when a line names one.

        A worker runs the review projection beside the risk projection; the
        lines of its leases and runners name it, and are left out unless
        asked for (``projection=None``: every line).
        """
        return [
            line
            for line in self.lines
            if line.get("event") == name
            and (projection is None or line.get("projection", projection) == projection)
        ]

    def wait_for(self, name: str, count: int = 1, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Block until the process logged ``count`` lines with event ``name``; return them all."""
        with self._logged:
            if not self._logged.wait_for(lambda: len(self.events(name)) >= count, timeout):
                tail = "\n".join(str(line) for line in self.lines[-15:])
                raise AssertionError(f"no {count} x {name} within {timeout}s; last lines:\n{tail}")
        return self.events(name)

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the worker process."""
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        self.wait()

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait for a graceful exit; return the exit code."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
        return self.wait(timeout)

    def wait(self, timeout: float = 60.0) -> int:
        """Wait for the process to exit; if it hangs, kill it and fail with its last log lines."""
        if self.proc is None:
            return 0
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            tail = "\n".join(str(line) for line in self.lines[-15:])
            raise AssertionError(
                f"worker did not exit within {timeout}s; last log lines:\n{tail}"
            ) from None
        if self._reader is not None:
            self._reader.join(5)
        return code


@dataclass
class Streams:
    """What the pipeline left behind, indexed for invariant checks."""

    evidence: dict[int, CloudEvent | None] = field(default_factory=dict)
    evidence_subjects: dict[int, str] = field(default_factory=dict)
    assessments: dict[int, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    assessment_headers: list[dict[str, str]] = field(default_factory=list)
    by_entity: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    dead_letters: dict[int, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))


async def read_streams(store: EventStore) -> Streams:
    """Read evidence, assessments and dead letters from the store."""
    out = Streams()
    async for rec in store.read_all():
        out.evidence[rec.sequence] = rec.event
        out.evidence_subjects[rec.sequence] = rec.subject
    async for rec in store.read_all(stream=store.config.stream_for("risk")):
        assert rec.event is not None, f"undecodable assessment at {rec.sequence}: {rec.error}"
        data = rec.event.data or {}
        seq = int(data["evidence"]["sequence"])
        out.assessments[seq].append(data)
        out.assessment_headers.append(rec.headers)
        out.by_entity[rec.subject].append(seq)
    async for rec in store.read_all(stream=store.config.stream_for("dlq")):
        assert rec.event is not None
        data = rec.event.data or {}
        out.dead_letters[int(data["sequence"])].append(data)
    return out


def check_invariants(streams: Streams, *, poison: Iterable[int] = ()) -> None:
    """I4 exactly one effect, I5 per-entity order, I6 dead letters complete and exact."""
    poison = set(poison)
    for seq in streams.evidence:
        effects = len(streams.assessments.get(seq, [])) + len(streams.dead_letters.get(seq, []))
        assert effects == 1, f"evidence {seq}: {effects} effects (assessments+dead letters)"
        if seq in poison:
            assert seq in streams.dead_letters, f"poison evidence {seq} was not dead-lettered"
    for subject, seqs in streams.by_entity.items():
        assert seqs == sorted(seqs), f"{subject}: assessments out of evidence order {seqs}"
        assert len(seqs) == len(set(seqs)), f"{subject}: an evidence assessed twice"
    for seq, letters in streams.dead_letters.items():
        letter = letters[0]
        for key in (
            "sequence",
            "subject",
            "error_type",
            "error_message",
            "delivery_count",
            "payload_sha256",
            "original",
        ):
            assert letter.get(key) not in (None, ""), f"dead letter {seq} lacks {key}"


async def wait_for_messages(
    store: EventStore, stream: str, count: int, *, timeout: float = 60
) -> int:
    """Wait until ``stream`` holds at least ``count`` messages; woken by each new one.

    A core subscription on the stream's subjects signals arrivals; the count
    itself always comes from the server, so a missed signal (a reconnect) only
    costs the one-second re-check.
    """
    arrived = asyncio.Event()

    async def on_message(_msg: object) -> None:
        arrived.set()

    info = await store.client.stream_info(stream)
    assert info is not None
    sub = await store.client.nc.subscribe(info["config"]["subjects"][0], cb=on_message)
    try:
        async with asyncio.timeout(timeout):
            while (have := int((await store.stream_state(stream))["messages"])) < count:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await arrived.wait()
                arrived.clear()
            return have
    finally:
        await sub.unsubscribe()
