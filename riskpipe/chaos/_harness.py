"""A chaos run: private servers, producers and workers under a seeded fault schedule.

The run owns every process it starts (by PID) and records every operation
in its history. After ``seconds`` it stops the producers, heals whatever is
still broken, waits for the pipeline to be quiet, reads the streams back,
and checks the invariants (:func:`riskpipe.chaos.check`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import secrets
import signal
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
import structlog
from pydantic import SecretStr

from eventstore import CloudEvent, OutboundMessage
from eventstore.errors import (
    AppendRejectedError,
    DecodeError,
    EventStoreError,
    InvalidHeaderError,
    JetStreamAPIError,
    PermissionDeniedError,
)
from projections import consumer_name, partition_views, read_checkpoint, read_leases
from riskpipe.chaos._enricher import ALWAYS, FlakyEnricher, transient_id
from riskpipe.chaos._history import (
    APPEND,
    CHECKPOINT,
    FAULT,
    HEAL,
    PROBE,
    RECOVERED,
    REDELIVERY,
    HistoryWriter,
    OpType,
)
from riskpipe.chaos._invariants import RECOVERY_LIMIT, Report, check
from riskpipe.chaos._plan import PlannedFault, Scenario, Timing, plan_faults, scenario_faults
from riskpipe.chaos._processes import Servers, WorkerProcess, stop_workers
from riskpipe.chaos._proxy import TcpProxy
from riskpipe.chaos._reading import read_final
from riskpipe.chaos._window import AckWindow
from riskpipe.chaos.errors import ChaosError
from riskpipe.settings import Settings
from riskpipe.wiring import connect_store, private_environment, private_settings

if TYPE_CHECKING:
    from pathlib import Path

    from eventstore import EventStore
    from riskpipe.chaos._final import FinalState

__all__ = ["ChaosOptions", "ChaosResult", "run_chaos"]

_log = structlog.get_logger(__name__)
_TENANT = "chaos"
_SOURCE = "chaos-producer"
_PATTERNS = ("failed_login_burst", "impossible_travel", "malware_alert", "sanctions_hit")
_SEVERITIES = ("low", "medium", "high", "critical")
_PRODUCERS = 2
_DUPLICATE_CHANCE = 0.02
_POISON_CHANCE = 0.01
_BACKOFF = (0.5, 1.0, 2.0, 4.0)
"""Nak delays by delivery: evidence failing every delivery is a dead letter within 8 s."""
_MALFORMED = 6
"""The classes of malformed poison (``_poison``); two more draws are transient failures."""
_FLAKY_PATTERN = "flaky_dependency"
"""The pattern of the evidence that gets transient failures: the only one the workers enrich."""
_DEFINITE = (DecodeError, InvalidHeaderError, AppendRejectedError)
"""Append errors raised before anything was stored: a ``fail``. Anything else is ``info``."""
_QUIET_TIMEOUT = 180.0
_MIN_GAP = 0.5
"""Seconds between one fault's recovery and the next fault, at least."""
_LEADER_BIAS = 0.7
"""How often a server kill on a cluster aims at the evidence stream's leader."""
_MAX_IN_FLIGHT = 256
"""A worker's in-flight budget: what one fault can send back for redelivery, at most."""
_PROBE_SECONDS = 5.0
"""How often a security probe is sent."""
_PROBE_WAIT = 2.0
"""How long a probe waits for the stream's answer."""
_UNAVAILABLE = 503
_PROBES: tuple[tuple[str, dict[str, str]], ...] = (
    ("injected-rollup-subject", {"Nats-Rollup": "sub"}),
    ("injected-rollup-all", {"Nats-Rollup": "all"}),
    ("injected-message-ttl", {"Nats-TTL": "1s"}),
    ("injected-counter", {"Nats-Incr": "1"}),
    (
        "injected-schedule",
        {"Nats-Schedule": "@every 1s", "Nats-Schedule-Target": "rp.evidence.x.y"},
    ),
)
"""Headers that would purge, expire or multiply evidence if the stream took them."""
_FORBIDDEN = (
    "producer-publishes-assessment",
    "producer-purges-evidence",
    "producer-writes-checkpoint",
)
"""What producer credentials must not do (a run with an auth config only)."""
_USERS = ("admin", "producer", "worker", "auditor", "sys")
"""The auth config's users: each gets a fresh password for the run."""
_AIM_SECONDS = 2.0
"""How long a worker kill waits for evidence of the worker's to be in the PubAck-ack window."""
_ACK_GRACE = 0.2
"""After a kill, how long an ack the worker sent just before may take to be seen."""


def _poison(n: int, max_payload: int) -> bytes:
    """A message no projection can assess, of one of the malformed classes."""
    cut_short = b'{"id": "x", "source": "legacy"'
    envelope = b'"source":"legacy","subject":"e","tenant":"chaos","time":"2026-11-02T08:00:00Z"'
    body = (
        cut_short,
        b'{"id":"x",' + envelope + b',"data":{"pattern":"x","severity":"extreme"}}',
        b'{"id":"x","type":"riskpipe.unknown.v1",' + envelope + b',"data":{}}',
        b'{"id":"x",' + envelope + b',"data":{"pattern":"x","severity":"low","confidence":NaN}}',
        b'{"id": "\xff\xfe"}',  # not UTF-8
        b'{"pad": "' + b"x" * (max_payload + 1) + b'"}',  # too large for the store
    )
    return body[n % len(body)]


@dataclass(frozen=True, slots=True)
class ChaosOptions:
    """What to run: the scenario, for how long, from which seed, on what."""

    scenario: Scenario
    seconds: float
    seed: int
    directory: Path
    """Where the servers' stores, the workers' logs and the history are written."""
    nodes: int = 1
    workers: int = 2
    rate: float = 200.0
    """Evidence appended per second, over every producer."""
    entities: int = 50
    ack_wait: float = 4.0
    lease_ttl: float = 4.0
    max_deliver: int = 5
    auth: Path | None = None
    """The accounts and users the servers run with (``include``d by each node's config):
    the harness, producers and workers log in as ``admin``, ``producer`` and ``worker``,
    and the security probes try what a producer may not do. ``None``: open servers."""


@dataclass(slots=True)
class ChaosResult:
    """What happened in a run, and what the checker found."""

    options: ChaosOptions
    report: Report
    evidence: int = 0
    appends: Counter[str] = field(default_factory=Counter)
    """Append outcomes: ``ok``, ``fail``, ``info``."""
    faults: Counter[str] = field(default_factory=Counter)
    """Faults by kind: the process faults, and the duplicate and poison appends."""
    recoveries: list[float] = field(default_factory=list)
    """Seconds from each heal until the workers had caught up again."""
    quiet_after: float = 0.0
    """Seconds from the end of the load until the pipeline was quiet."""
    worker_exits: list[str] = field(default_factory=list)
    """Workers that exited by themselves (not killed by the run), with their status."""
    kills_in_window: int = 0
    """Worker kills that left evidence assessed and never acknowledged by the dead worker."""

    @property
    def ok(self) -> bool:
        """No invariant violated."""
        return self.report.ok

    def headline(self) -> str:
        """One line: topology, load, faults, the verdict and the recovery times."""
        o = self.options
        topology = f"{o.nodes} nodes R{o.nodes}" if o.nodes > 1 else "1 node"
        faults = ", ".join(
            f"{kind} {count} ({self.kills_in_window} between a PubAck and its ack)"
            if kind == "kill-worker"
            else f"{kind} {count}"
            for kind, count in sorted(self.faults.items())
        )
        recovery = (
            f"recovery p50 {statistics.median(self.recoveries):.1f} s / "
            f"max {max(self.recoveries):.1f} s"
            if self.recoveries
            else "no recovery measured"
        )
        violated = len(self.report.violated())
        return (
            f"{topology}, {o.seconds:g} s, {self.evidence:,} evidence, "
            f"{sum(self.faults.values())} faults ({faults or 'none'}), "
            f"{violated} of {len(self.report.checked)} invariants violated, {recovery}"
        )

    def to_json(self) -> dict[str, Any]:
        """The result as JSON-ready data."""
        o = self.options
        return {
            "scenario": o.scenario,
            "seconds": o.seconds,
            "seed": o.seed,
            "nodes": o.nodes,
            "workers": o.workers,
            "rate": o.rate,
            "evidence": self.evidence,
            "appends": dict(self.appends),
            "faults": dict(self.faults),
            "recoveries": [round(s, 3) for s in self.recoveries],
            "quiet_after": round(self.quiet_after, 3),
            "worker_exits": self.worker_exits,
            "kills_in_window": self.kills_in_window,
            "invariants": list(self.report.checked),
            "violations": [
                {"invariant": v.invariant, "message": v.message, "ops": [str(op) for op in v.ops]}
                for v in self.report.violations
            ],
            "ok": self.ok,
            "headline": self.headline(),
        }


class _Run:
    """The state of one run while it goes."""

    def __init__(self, options: ChaosOptions) -> None:
        self.options = options
        self.rng = random.Random(options.seed)  # noqa: S311 - a reproducible schedule
        self.passwords = (
            {user: f"pw-{secrets.token_hex(16)}" for user in _USERS} if options.auth else {}
        )
        self.servers = Servers(
            options.directory / "nats",
            options.nodes,
            auth=options.auth,
            env={f"NATS_{user.upper()}_PASSWORD": pw for user, pw in self.passwords.items()},
            logs=options.directory / "logs",
        )
        self.history = HistoryWriter(options.directory / "history.jsonl")
        self.result = ChaosResult(options, Report(()))
        self.settings = Settings(
            lease_ttl=timedelta(seconds=options.lease_ttl),
            replicas=options.nodes,
            ack_wait_seconds=options.ack_wait,
            max_deliver=options.max_deliver,
            max_in_flight=_MAX_IN_FLIGHT,
            review=False,
        )
        self.workers: list[WorkerProcess] = []
        self.proxies: list[list[TcpProxy]] = []
        """Each worker's proxies, one per node."""
        self.cut: set[int] = set()
        self.load_over = asyncio.Event()
        self.kinds = scenario_faults(options.scenario)
        self.window: AckWindow | None = None
        """Evidence assessed and not yet acknowledged: where worker kills are aimed."""
        self.partitions = 1
        # it fails by the delivery number each call carries, however many calls a delivery makes
        self.enricher = FlakyEnricher() if "poison" in self.kinds else None

    # -- set-up ---------------------------------------------------------------

    def login(self, user: str) -> dict[str, str]:
        """The settings that log in as ``user``, by name (none on open servers).

        Each user but ``admin`` has an inbox prefix of its own, as the auth file grants.
        """
        if not self.passwords:
            return {}
        inbox = "_INBOX" if user == "admin" else f"_INBOX_{user}"
        return {"nats_user": user, "nats_password": self.passwords[user], "inbox_prefix": inbox}

    async def connect(self, name: str, user: str = "admin") -> EventStore:
        login: dict[str, Any] = self.login(user)
        if "nats_password" in login:
            login["nats_password"] = SecretStr(login["nats_password"])
        settings = private_settings(self.settings, self.servers.url, **login)
        return await connect_store(settings, name=name)

    async def start_workers(self) -> None:
        """Start the workers, each reaching every node through proxies of its own."""
        o = self.options
        env = private_environment(os.environ, self.servers.url) | {
            "RISKPIPE_LOG_FORMAT": "json",
            "RISKPIPE_LOG_LEVEL": "warning",
            "RISKPIPE_ACK_WAIT_SECONDS": str(o.ack_wait),
            "RISKPIPE_MAX_DELIVER": str(o.max_deliver),
            "RISKPIPE_REDELIVERY_BACKOFF_SECONDS": orjson.dumps(_BACKOFF).decode(),
            "RISKPIPE_MAX_IN_FLIGHT": str(self.settings.max_in_flight),
            "RISKPIPE_REVIEW": "false",
            "RISKPIPE_LEASE_TTL": f"{o.lease_ttl}s",
            "RISKPIPE_DATA_DIR": str(o.directory / "data"),
        }
        env |= {f"RISKPIPE_{name.upper()}": value for name, value in self.login("worker").items()}
        if self.enricher is not None:
            await self.enricher.start()
            env |= {
                "RISKPIPE_ENRICHMENT_URL": self.enricher.url,
                # only what the fault needs: an HTTP call per evidence costs a worker
                # milliseconds, and the load would outrun it while it catches up
                "RISKPIPE_ENRICHMENT_PATTERNS": orjson.dumps([_FLAKY_PATTERN]).decode(),
                "RISKPIPE_ENRICHMENT_ATTEMPTS": "1",
                "RISKPIPE_RETRY_ATTEMPTS": str(self.settings.retry_attempts),
                # a failing delivery is the fault; an open breaker would fail everything
                "RISKPIPE_ENRICHMENT_FAIL_MAX": "1000",
                "RISKPIPE_ENRICHMENT_TIMEOUT_SECONDS": "10",
            }
        logs = o.directory / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for n in range(1, o.workers + 1):
            proxies = [TcpProxy(node.host, node.port) for node in self.servers.nodes]
            for proxy in proxies:
                await proxy.start()
            self.proxies.append(proxies)
            url = ",".join(proxy.url for proxy in proxies)
            worker = WorkerProcess(
                f"worker-{n}", env | {"RISKPIPE_NATS_URL": url}, logs / f"worker-{n}.log"
            )
            worker.start()
            self.workers.append(worker)

    # -- load -----------------------------------------------------------------

    async def produce(self, name: str, store: EventStore, rng: random.Random) -> None:
        """Append at this producer's share of the rate until the load is over."""
        o = self.options
        interval = _PRODUCERS / o.rate
        sent: list[CloudEvent] = []
        resend: list[CloudEvent] = []
        n = 0
        next_at = time.monotonic()
        while not self.load_over.is_set():
            next_at += interval
            if (delay := next_at - time.monotonic()) > 0:
                await asyncio.sleep(delay)
            if resend:
                await self.append(name, store, resend.pop(0), resend)
            elif "duplicate" in self.kinds and sent and rng.random() < _DUPLICATE_CHANCE:
                again = rng.choice(sent[-200:])
                self.result.faults["duplicate"] += 1
                for _ in range(rng.randint(1, 3)):
                    await self.append(name, store, again, resend)
            elif "poison" in self.kinds and rng.random() < _POISON_CHANCE:
                await self.append_poison(name, store, n, rng, resend)
            else:
                event = _evidence(name, n, rng, o.entities)
                sent.append(event)
                await self.append(name, store, event, resend)
            n += 1

    async def append(
        self, name: str, store: EventStore, event: CloudEvent, resend: list[CloudEvent]
    ) -> None:
        self.history.record(name, APPEND, "invoke", msg_id=event.msg_id,
                            entity=f"{event.tenant}.{event.subject}", expect="assess")  # fmt: skip
        await self._complete(name, store, event, resend)

    async def _complete(
        self, name: str, store: EventStore, event: CloudEvent, resend: list[CloudEvent]
    ) -> None:
        """Append ``event`` and record its outcome (an ambiguous one: into ``resend``)."""
        try:
            result = await store.append(event)
        except _DEFINITE as exc:
            self.history.record(name, APPEND, "fail", msg_id=event.msg_id, error=repr(exc))
            self.result.appends["fail"] += 1
        except (EventStoreError, OSError, TimeoutError) as exc:
            # nobody knows whether it is stored: say so, and send it again (same id)
            self.history.record(name, APPEND, "info", msg_id=event.msg_id, error=repr(exc))
            self.result.appends["info"] += 1
            resend.append(event)
        else:
            self.history.record(name, APPEND, "ok", msg_id=event.msg_id,
                                sequence=result.sequence, duplicate=result.duplicate)  # fmt: skip
            self.result.appends["ok"] += 1

    async def append_poison(
        self, name: str, store: EventStore, n: int, rng: random.Random, resend: list[CloudEvent]
    ) -> None:
        kind = rng.randrange(_MALFORMED + 2)
        if kind >= _MALFORMED and self.enricher is not None:
            await self.append_transient(name, store, n, rng, resend, always=kind > _MALFORMED)
            return
        entity = f"e{rng.randrange(self.options.entities)}"
        msg_id = f"poison-{name}-{n}"
        payload = _poison(kind % _MALFORMED, store.config.max_payload_bytes)
        self.history.record(name, APPEND, "invoke", msg_id=msg_id,
                            entity=f"{_TENANT}.{entity}", expect="dead-letter")  # fmt: skip
        self.result.faults["poison"] += 1
        try:
            result = await store.append_unchecked(
                "evidence", _TENANT, entity, payload, msg_id=msg_id
            )
        except (EventStoreError, OSError, TimeoutError) as exc:
            self.history.record(name, APPEND, "info", msg_id=msg_id, error=repr(exc))
            self.result.appends["info"] += 1
        else:
            self.history.record(name, APPEND, "ok", msg_id=msg_id, sequence=result.sequence,
                                duplicate=result.duplicate)  # fmt: skip
            self.result.appends["ok"] += 1

    async def append_transient(  # noqa: PLR0913 - a producer's append, and which failure
        self,
        name: str,
        store: EventStore,
        n: int,
        rng: random.Random,
        resend: list[CloudEvent],
        *,
        always: bool,
    ) -> None:
        """Valid evidence the analyzer fails on: a few deliveries, or every one of them.

        Failing fewer deliveries than ``max_deliver`` allows (leaving one for
        a fault's redelivery), it must end assessed (a dead letter only if
        faults took more than that one); failing every one, as a dead letter.
        """
        max_deliver = self.options.max_deliver
        failures = ALWAYS if always else rng.randint(1, max(1, max_deliver - 2))
        event = _evidence(name, n, rng, self.options.entities)
        # an entity of its own: nothing waits behind its retries, and it waits behind
        # nobody else's (a later evidence spends deliveries waiting: docs/reliability.md)
        entity = f"flaky-{name}-{n}"
        data = {**(event.data or {}), "pattern": _FLAKY_PATTERN}
        event = event.model_copy(
            update={"id": transient_id(failures, event.id), "subject": entity, "data": data}
        )
        self.result.faults["transient"] += 1
        self.history.record(name, APPEND, "invoke", msg_id=event.msg_id,
                            entity=f"{event.tenant}.{event.subject}",
                            expect="dead-letter" if always else "assess",
                            failures=max_deliver if always else failures)  # fmt: skip
        # resent like any evidence if the outcome is unknown: what it expects is its first invoke's
        await self._complete(name, store, event, resend)

    # -- faults ---------------------------------------------------------------

    async def nemesis(self, plan: list[PlannedFault], observer: EventStore) -> None:
        """Inject each planned fault, heal it, and time the workers' catching up."""
        started = time.monotonic()
        for fault in plan:
            # on schedule, but never right on the heels of the last recovery
            await asyncio.sleep(max(_MIN_GAP, started + fault.at - time.monotonic()))
            target = await self.inject(fault, observer)
            await asyncio.sleep(fault.duration)
            healed_at = time.monotonic()
            await self.heal(fault.kind, target)
            allowed = max(5, int(self.options.rate / 4))  # a quarter second of load
            caught_up = await _caught_up(observer, time.monotonic() + RECOVERY_LIMIT, allowed)
            if caught_up:
                self.result.recoveries.append(time.monotonic() - healed_at)

    async def inject(self, fault: PlannedFault, observer: EventStore) -> int:
        target = fault.target
        if (
            fault.kind == "kill-server"
            and self.options.nodes > 1
            and self.rng.random() < _LEADER_BIAS
        ):
            target = await self._leader(observer, default=target)
        name = self._name(fault.kind, target)
        window: set[int] = set()
        aimed: dict[str, Any] = {}
        if fault.kind == "kill-worker" and self.window is not None:
            partitions = await self._partitions_of(self.workers[target], observer)
            window = await self.window.aim(partitions, _AIM_SECONDS)
            aimed = {"window": sorted(window)}
        self.history.record("nemesis", FAULT, "info", fault=fault.kind, target=name,
                            duration=fault.duration, how=fault.how, **aimed)  # fmt: skip
        self.result.faults[fault.kind] += 1
        await self._apply(fault, target)
        if window and self.window is not None:
            await asyncio.sleep(_ACK_GRACE)  # an ack the worker had sent still arrives
            hit = window & self.window.in_window(set(range(self.partitions)))
            self.result.kills_in_window += bool(hit)
        return target

    async def _apply(self, fault: PlannedFault, target: int) -> None:
        """Inject ``fault`` into ``target`` (a worker's or a node's index)."""
        if fault.kind == "kill-worker":
            self.workers[target].kill()
        elif fault.kind == "pause-worker":
            self.workers[target].pause()
        elif fault.kind == "kill-server":
            self.servers.kill(target)
        elif fault.kind == "rolling-restart":
            await asyncio.to_thread(self.servers.rolling_restart)
        elif fault.kind == "partition-worker":
            for proxy in self.proxies[target]:
                await proxy.cut(fault.how)  # type: ignore[arg-type]
            self.cut.add(target)
        elif fault.kind == "partition-node":
            await self.servers.isolate(target, fault.how)  # type: ignore[arg-type]
        else:
            self.servers.pause(target)

    async def heal(self, kind: str, target: int) -> None:
        if kind == "kill-worker":
            self.workers[target].start()
        elif kind == "pause-worker":
            self.workers[target].resume()
        elif kind == "kill-server":
            await asyncio.to_thread(self.servers.restart, target)
        elif kind == "pause-server":
            self.servers.resume(target)
        elif kind == "partition-worker":
            for proxy in self.proxies[target]:
                await proxy.heal()
            self.cut.discard(target)
        elif kind == "partition-node":
            await self.servers.reconnect(target)
        self.history.record("nemesis", HEAL, "info", fault=kind, target=self._name(kind, target))

    async def wake(self) -> None:
        """Let every process reach its server again: what a run cut short does before closing.

        A connection's close drains it, and a drain waits for a server that
        answers: frozen servers are woken and cut networks joined. Unlike
        ``heal_everything`` this records nothing and restarts nothing.
        """
        for index in list(self.servers.paused):
            self.servers.resume(index)
        for index in list(self.cut):
            for proxy in self.proxies[index]:
                await proxy.heal()
            self.cut.discard(index)
        for index in list(self.servers.isolated):
            await self.servers.reconnect(index)

    async def heal_everything(self) -> None:
        """Undo whatever fault the run stopped in the middle of."""
        for index in sorted(self.servers.paused):
            self.servers.resume(index)
            self.history.record("nemesis", HEAL, "info", fault="pause-server",
                                target=self._name("pause-server", index))  # fmt: skip
        for index in sorted(self.servers.down):
            await asyncio.to_thread(self.servers.restart, index)
            self.history.record("nemesis", HEAL, "info", fault="kill-server",
                                target=self._name("kill-server", index))  # fmt: skip
        for index in sorted(self.cut):
            await self.heal("partition-worker", index)
        for index in sorted(self.servers.isolated):
            await self.heal("partition-node", index)
        for index, worker in enumerate(self.workers):
            if worker.paused:
                worker.resume()
                self.history.record("nemesis", HEAL, "info", fault="pause-worker",
                                    target=worker.name)  # fmt: skip
            elif worker.exited() is not None:
                worker.start()
                self.history.record("nemesis", HEAL, "info", fault="kill-worker",
                                    target=self._name("kill-worker", index))  # fmt: skip

    def _name(self, kind: str, target: int) -> str:
        if kind == "rolling-restart":
            return "cluster"
        return self.workers[target].name if "worker" in kind else f"n{target + 1}"

    async def _partitions_of(self, worker: WorkerProcess, observer: EventStore) -> set[int]:
        """The partitions ``worker`` holds leases on (none known: every partition)."""
        with contextlib.suppress(EventStoreError, OSError, TimeoutError):
            leases = await read_leases(observer, self.settings.projection)
            owned = {
                partition
                for partition, lease in leases.items()
                if worker.pid is not None and f"-{worker.pid}-" in lease.owner
            }
            if owned:
                return owned
        return set(range(self.partitions))

    async def _leader(self, observer: EventStore, *, default: int) -> int:
        """The node leading the evidence stream (``default`` when it cannot be told)."""
        with contextlib.suppress(EventStoreError, OSError, TimeoutError):
            info = await observer.client.stream_info(observer.config.stream_for("evidence"))
            leader = (info or {}).get("cluster", {}).get("leader")
            if isinstance(leader, str) and (index := self.servers.index_of(leader)) is not None:
                return index
        return default

    # -- security probes --------------------------------------------------------

    async def probe(self) -> None:
        """Every few seconds, try one thing no producer may do; it must be refused.

        Each probe is a connection of its own, as the producer (the admin on
        open servers): a permission the server denies ends it at once.
        """
        rng = random.Random(self.options.seed * 7)  # noqa: S311 - a reproducible sequence
        forbidden = _FORBIDDEN if self.passwords else ()
        probes = [
            name
            for pair in itertools.zip_longest([name for name, _ in _PROBES], forbidden)
            for name in pair
            if name is not None
        ]
        n = 0
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_PROBE_SECONDS):
                    await self.load_over.wait()
            if self.load_over.is_set():
                return  # no probe starts once the load is over
            name = probes[n % len(probes)]
            event = _evidence("probe", n, rng, self.options.entities)
            self.history.record("probe", PROBE, "invoke", probe=name, msg_id=event.msg_id)
            try:
                outcome, how = await self.probe_once(name, event)
            except asyncio.CancelledError:
                # the run ended under it: no answer, as for a server that never replied
                self.history.record("probe", PROBE, "info", probe=name, msg_id=event.msg_id,
                                    how="cancelled: the run ended")  # fmt: skip
                raise
            self.history.record("probe", PROBE, outcome, probe=name, msg_id=event.msg_id,
                                how=how)  # fmt: skip
            n += 1

    async def probe_once(self, name: str, event: CloudEvent) -> tuple[OpType, str]:
        """Try probe ``name``: its outcome (``ok``: refused) and how that came about."""
        try:
            store = await self.connect("riskpipe-chaos-prober", "producer")
        except (EventStoreError, OSError, TimeoutError) as exc:
            return "info", f"no connection: {exc!r}"
        try:
            async with store:
                if name in _FORBIDDEN:
                    return await _forbidden(store, name, event)
                return await _try(store, event, dict(_PROBES)[name])
        except PermissionDeniedError as exc:
            return "ok", str(exc)

    # -- observation ----------------------------------------------------------

    async def sample_checkpoints(self, observer: EventStore) -> None:
        """Read every partition's checkpoint each second; record each that moved."""
        stream = observer.config.stream_for("evidence")
        seen: dict[int, int] = {}
        while True:
            for partition in range(observer.config.partitions):
                name = consumer_name(self.settings.projection, partition)
                try:
                    # from the leader: a replica catching up would show one going back
                    stored = await read_checkpoint(observer, name, stream, leader=True)
                except (EventStoreError, OSError, TimeoutError):
                    continue
                if stored.refused is None and stored.sequence != seen.get(partition):
                    seen[partition] = stored.sequence
                    self.history.record("checker", CHECKPOINT, "info",
                                        projection=self.settings.projection,
                                        partition=partition, position=stored.sequence)  # fmt: skip
            await asyncio.sleep(1.0)

    def check_workers(self) -> None:
        """Note a worker that exited by itself (not killed by the run), and start it again."""
        for worker in self.workers:
            status = worker.exited()
            if status is not None and status != -signal.SIGKILL and not worker.paused:
                self.result.worker_exits.append(f"{worker.name} exited with status {status}")
                worker.start()


async def run_chaos(options: ChaosOptions) -> ChaosResult:
    """Run ``options.scenario`` and check every invariant over its history.

    Raises:
        ChaosError: the run could not be set up or never became quiet.
    """
    options.directory.mkdir(parents=True, exist_ok=True)
    run = _Run(options)
    try:
        await run.servers.start_routes()
        await asyncio.to_thread(run.servers.start)
        observer = await run.connect("riskpipe-chaos-checker")
        await observer.provision()
        run.partitions = observer.config.partitions
        if "kill-worker" in run.kinds:
            run.window = AckWindow(observer, run.settings.projection)
            await run.window.start()
        await run.start_workers()
        try:
            await _run_load(run, observer)
            quiet_from = time.monotonic()
            await run.heal_everything()
            await _await_quiet(run, observer)
            run.result.quiet_after = time.monotonic() - quiet_from
            final = await _final(run, observer)
        finally:
            await run.wake()
            # in a thread: the workers reach the servers through this loop's proxies
            await asyncio.to_thread(stop_workers, run.workers)
            for proxies in run.proxies:
                for proxy in proxies:
                    await proxy.stop()
            if run.enricher is not None:
                await run.enricher.stop()
            if run.window is not None:
                await run.window.stop()
            await observer.close()
        final.dump(options.directory / "final")
        run.result.evidence = len(final.evidence)
        run.result.report = check(run.history.ops, final)
        return run.result
    finally:
        run.history.close()
        run.servers.stop()
        await run.servers.stop_routes()


async def _run_load(run: _Run, observer: EventStore) -> None:
    o = run.options
    timing = Timing(o.ack_wait, o.lease_ttl)
    plan = plan_faults(o.scenario, o.seconds, o.seed, workers=o.workers, nodes=o.nodes,
                       timing=timing)  # fmt: skip
    producers = [await run.connect(f"riskpipe-chaos-p{n}") for n in range(1, _PRODUCERS + 1)]
    seeds = [random.Random(o.seed * 31 + n) for n in range(1, _PRODUCERS + 1)]  # noqa: S311
    tasks = [
        asyncio.create_task(run.produce(f"producer-{n}", store, rng))
        for n, (store, rng) in enumerate(zip(producers, seeds, strict=True), start=1)
    ]
    sampler = asyncio.create_task(run.sample_checkpoints(observer))
    prober = asyncio.create_task(run.probe())
    nemesis = asyncio.create_task(run.nemesis(plan, observer))
    try:
        deadline = time.monotonic() + o.seconds
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(1.0, left))
            run.check_workers()
        run.load_over.set()
        await asyncio.gather(*tasks)
        await nemesis
        with contextlib.suppress(TimeoutError):  # a probe under way finishes (it has timeouts)
            await asyncio.wait_for(asyncio.shield(prober), _PROBE_SECONDS * 2)
    finally:
        run.load_over.set()
        for task in (*tasks, nemesis, sampler, prober):
            task.cancel()
        await asyncio.gather(*tasks, nemesis, sampler, prober, return_exceptions=True)
        await run.wake()  # a producer's close drains: against a frozen server, for 30 s
        for store in producers:
            await store.close()


async def _caught_up(store: EventStore, deadline: float, allowed: int = 0) -> bool:
    """Wait until at most ``allowed`` evidence is pending or unacknowledged; whether in time.

    Under load a little is always in flight: the nemesis allows a quarter
    second of it; at the end nothing may be.
    """
    while time.monotonic() < deadline:
        with contextlib.suppress(EventStoreError, OSError, TimeoutError):
            views = await partition_views(store, "risk", source="evidence")
            if (
                all(view.info is not None for view in views)
                and sum(
                    int(view.info["num_pending"]) + int(view.info["num_ack_pending"])
                    for view in views
                    if view.info is not None
                )
                <= allowed
            ):
                return True
        await asyncio.sleep(0.25)
    return False


async def _await_quiet(run: _Run, observer: EventStore) -> None:
    """Wait until every evidence is handled and the replicas agree; record the recovery.

    Raises:
        ChaosError: the pipeline was not quiet within three minutes.
    """
    deadline = time.monotonic() + _QUIET_TIMEOUT
    while True:
        run.check_workers()
        agree = await _replicas_agree(observer)
        if agree and await _caught_up(observer, time.monotonic() + 1.0):
            break
        if time.monotonic() > deadline:
            raise ChaosError(
                f"the pipeline was not quiet {_QUIET_TIMEOUT:g} s after the load ended "
                f"(replicas agree: {agree}); see {run.options.directory}"
            )
    run.history.record("checker", RECOVERED, "info", replicas_agree=True)
    redelivered = 0
    for view in await partition_views(observer, "risk", source="evidence"):
        redelivered += int((view.info or {}).get("num_redelivered", 0))
    run.history.record("checker", REDELIVERY, "info", projection="risk", redelivered=redelivered)


async def _replicas_agree(store: EventStore) -> bool:
    """Whether every replica of every stream is current, as each stream's leader reports."""
    for category in ("evidence", "risk", "dlq"):
        try:
            info = await store.client.stream_info(store.config.stream_for(category))
        except (EventStoreError, OSError, TimeoutError):
            return False
        replicas = ((info or {}).get("cluster") or {}).get("replicas") or []
        if any(not r.get("current") or r.get("lag", 0) for r in replicas):
            return False
    return True


async def _final(run: _Run, observer: EventStore) -> FinalState:
    o = run.options
    return await read_final(
        observer,
        max_deliver=o.max_deliver,
        max_in_flight=run.settings.max_in_flight,
        workers=o.workers,
    )


async def _try(store: EventStore, event: CloudEvent, headers: dict[str, str]) -> tuple[OpType, str]:
    """Send ``event`` with ``headers``: ``ok`` if refused, ``fail`` if taken, ``info``: unknown.

    With the store's own API first (it refuses every ``Nats-*`` header before
    sending), then as a raw JetStream publish, as any NATS client could send.
    """
    try:
        await store.append(event, headers=headers)
    except InvalidHeaderError:
        pass
    except (EventStoreError, OSError, TimeoutError) as exc:
        return "info", f"the store's append: {exc!r}"
    else:
        return "fail", "stored by the store's append"
    payload = orjson.dumps(event.model_dump(mode="json", exclude_none=True))
    raw = {**headers, "Nats-Msg-Id": event.msg_id}
    # sent as it is: the publisher writes whatever headers it is given
    return await _published(store, store.subject_of(event), payload, raw)


async def _published(
    store: EventStore, subject: str, payload: bytes, headers: dict[str, str]
) -> tuple[OpType, str]:
    """A raw JetStream publish: ``fail`` if a stream took it, ``ok`` if one refused it."""
    try:
        acked = await store.client.publisher.publish(OutboundMessage(subject, payload, headers))
        async with asyncio.timeout(_PROBE_WAIT):
            await acked
    except JetStreamAPIError as exc:
        # refused; "temporarily unavailable" (a cluster electing) says nothing about the header
        return ("info" if exc.code == _UNAVAILABLE else "ok"), f"refused by the stream: {exc}"
    except (EventStoreError, OSError, TimeoutError) as exc:
        return "info", repr(exc)  # no answer: if it was stored after all, it is phantom evidence
    return "fail", f"stored on {subject}"


async def _forbidden(store: EventStore, probe: str, event: CloudEvent) -> tuple[OpType, str]:
    """Do what producer credentials must not; a denial ends the caller's block first.

    Each is aimed where it does no harm if it is taken: an entity of the
    probe's own, a checkpoint no projection reads, a purge of one subject.
    """
    config = store.config
    entity = f"{event.tenant}.probe-{event.id}"
    if probe == "producer-publishes-assessment":
        subject = f"{config.prefix}.risk.{entity}"
        return await _published(store, subject, b"{}", {"Nats-Msg-Id": event.msg_id})
    if probe == "producer-writes-checkpoint":
        subject = f"$KV.{config.checkpoint_bucket}.probe"
        return await _published(store, subject, b"0", {})
    stream = config.stream_for("evidence")
    partition = "*." if config.partitioned is not None else ""  # as stored: with its partition
    try:
        async with asyncio.timeout(_PROBE_WAIT):
            answer = await store.client.api(
                f"STREAM.PURGE.{stream}",
                {"filter": f"{config.prefix}.evidence.{partition}{entity}"},
            )
    except JetStreamAPIError as exc:
        return "ok", f"refused by the stream: {exc}"
    except (EventStoreError, OSError, TimeoutError) as exc:
        return "info", repr(exc)
    return "fail", f"purged: {answer}"


def _evidence(producer: str, n: int, rng: random.Random, entities: int) -> CloudEvent:
    return CloudEvent(
        id=f"{producer}-{n:08d}",
        source=_SOURCE,
        type="riskpipe.evidence.recorded.v1",
        subject=f"e{rng.randrange(entities)}",
        tenant=_TENANT,
        time=datetime.now(UTC),
        data={
            "pattern": rng.choice(_PATTERNS),
            "severity": rng.choice(_SEVERITIES),
            "confidence": round(rng.uniform(0.5, 1.0), 2),
        },
    )
