"""`riskpipe status` shows the lease owners: which worker holds which partitions, and which none."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import orjson
from support.cli import riskpipe
from support.nats import QUICK_LEASE_TTL, QUICK_LEASES
from support.pipeline import WorkerProcess

from projections import LeaseRecord, read_leases

if TYPE_CHECKING:
    from eventstore import EventStore
    from riskpipe.server import NatsServer

P = 16


def _status(url: str) -> tuple[dict[str, object], str]:
    """``riskpipe status --json`` and ``riskpipe status``, both exiting 0."""
    as_json = riskpipe("status", "--json", env={"RISKPIPE_NATS_URL": url})
    text = riskpipe("status", env={"RISKPIPE_NATS_URL": url})
    assert (as_json.returncode, text.returncode) == (0, 0), as_json.stderr + text.stderr
    leases = orjson.loads(as_json.stdout)["leases"]
    assert isinstance(leases, dict)
    return leases, text.stdout


async def test_status_shows_two_workers_whose_partitions_cover_all_exactly_once(
    nats_server: NatsServer, quick_lease_store: EventStore
) -> None:
    """Two leased worker processes: two owners, 8 partitions each, every partition once."""
    workers = [WorkerProcess(nats_server.url, env=QUICK_LEASES) for _ in range(2)]
    try:
        await asyncio.gather(*(asyncio.to_thread(w.start, 60.0) for w in workers))
        ids = {str(w.logged("leases.joined")["member"]) for w in workers}
        async with asyncio.timeout(30):
            while {r.owner for r in (await read_leases(quick_lease_store, "risk")).values()} != ids:  # noqa: ASYNC110 - leases change on the workers' rounds
                await asyncio.sleep(0.2)
        before = time.time()
        leases, text = await asyncio.to_thread(_status, nats_server.url)
    finally:
        codes = [await asyncio.to_thread(w.stop, 60) for w in workers]
    assert codes == [0, 0]

    assert leases["ttl"] == QUICK_LEASE_TTL.total_seconds()
    shares = leases["workers"]
    assert isinstance(shares, list)
    assert {s["worker"] for s in shares} == ids
    assert all(s["member"] for s in shares)
    held = [p for s in shares for p in s["partitions"]]
    assert sorted(held) == list(range(P)), "every partition held, by one worker only"
    assert sorted(len(s["partitions"]) for s in shares) == [8, 8]
    assert leases["unowned"] == []
    for share in shares:  # renewed every second: runs out within the TTL from now
        assert before < share["expires_at"] <= time.time() + QUICK_LEASE_TTL.total_seconds() + 1

    assert "lease owners (TTL 3 s; 16 of 16 held)" in text
    for worker in ids:
        assert worker in text
    assert "unowned" not in text


async def test_status_shows_a_spare_a_gone_worker_and_unowned_partitions(
    nats_server: NatsServer, store: EventStore
) -> None:
    """Members and leases as the bucket holds them mid-rebalance: every case has its words."""
    kv = store.kv(store.config.lease_bucket)
    expires = time.time() + 10

    def record(owner: str) -> bytes:
        return LeaseRecord(owner=owner, expires_at=expires).model_dump_json().encode()

    for member in ("w1", "w3"):
        await kv.put(f"risk.member.{member}", record(member))
    for partition in range(P - 1):
        await kv.create(f"risk.partition.{partition}", record("w1" if partition < 8 else "w2"))
    await kv.put("risk.partition.junk", record("w9"))  # nobody's lease: not a partition
    await kv.put("risk.member.w4", b"not a record")  # nobody's membership

    leases, text = await asyncio.to_thread(_status, nats_server.url)

    assert leases == {
        "ttl": 15.0,
        "workers": [
            {"worker": "w1", "partitions": list(range(8)), "expires_at": expires, "member": True},
            {
                "worker": "w2",
                "partitions": list(range(8, 15)),
                "expires_at": expires,
                "member": False,
            },
            {"worker": "w3", "partitions": [], "expires_at": expires, "member": True},
        ],
        "unowned": [15],
    }
    assert "lease owners (TTL 15 s; 15 of 16 held)" in text
    rows = {line.split()[1]: line for line in text.splitlines() if line.startswith("│ w")}
    assert "0-7" in rows["w1"]
    assert "8-14" in rows["w2"]
    assert "(left or crashed)" in rows["w2"]
    assert "none (a spare)" in rows["w3"]
    assert "unowned: 15 (held by no worker" in text


async def test_status_says_when_no_worker_holds_a_lease(
    nats_server: NatsServer, store: EventStore
) -> None:
    """No worker running: every partition unowned, and one line saying why that may be."""
    leases, text = await asyncio.to_thread(_status, nats_server.url)
    assert leases == {"ttl": 15.0, "workers": [], "unowned": list(range(P))}
    assert "leases (TTL 15 s): no worker holds a lease" in text
    assert store.config.partitions == P
