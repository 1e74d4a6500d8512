"""Provisioning: idempotent creation, drift reports, and streams that cannot be erased."""

from __future__ import annotations

from datetime import timedelta

import pytest
from support.events import evidence

from eventstore import EventStore
from eventstore.errors import InvalidHeaderError, JetStreamAPIError
from riskpipe.topology import topology_config


async def test_provision_is_idempotent(store: EventStore) -> None:
    """A second provision finds every stream and bucket and creates nothing."""
    report = await store.provision()
    assert report.created == []
    assert report.ok
    assert set(report.found) == {
        "EVIDENCE", "RISK", "DLQ", "AUDIT", "REVIEW", "OUTCOMES", "CONFIGS", "SHADOW",
            "KV_rp-checkpoints", "KV_rp-leases",
    }  # fmt: skip


async def test_provision_reports_drift_without_changing_the_stream(store: EventStore) -> None:
    """A store expecting another config reports the difference and leaves the stream alone."""
    other = EventStore(
        store.client,
        schemas=store.schemas,
        config=topology_config(duplicate_window=timedelta(minutes=5)),
    )
    report = await other.provision()
    assert not report.ok
    drifted = {d.stream: d for d in report.drifted}
    assert "EVIDENCE" in drifted
    found, want = drifted["EVIDENCE"].differences["duplicate_window"]
    assert (found, want) == (7200 * 10**9, 300 * 10**9)
    assert "duplicate_window" in str(drifted["EVIDENCE"])
    info = await store.client.stream_info("EVIDENCE")
    assert info is not None
    assert info["config"]["duplicate_window"] == 7200 * 10**9


async def test_evidence_cannot_be_purged_or_deleted(store: EventStore) -> None:
    """The evidence stream refuses purging and deleting single messages."""
    await store.append(evidence("a1"))
    with pytest.raises(JetStreamAPIError):
        await store.client.api("STREAM.PURGE.EVIDENCE")
    with pytest.raises(JetStreamAPIError):
        await store.client.api("STREAM.MSG.DELETE.EVIDENCE", {"seq": 1})
    assert [r.sequence async for r in store.read_all()] == [1]


@pytest.mark.parametrize("header", [{"Nats-Rollup": "sub"}, {"Nats-TTL": "1s"}])
async def test_store_refuses_control_headers(store: EventStore, header: dict[str, str]) -> None:
    """The store will not send a caller's Nats-* control header at all."""
    with pytest.raises(InvalidHeaderError, match="reserved"):
        await store.append(evidence("a1"), headers=header)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ({"X-Note": "a\ud800b"}, "not valid Unicode"),
        ({"X-Note": "a\r\nNats-Rollup: all"}, "control character"),
        ({"Bad Name": "x"}, "not a valid name"),
    ],
)
async def test_store_refuses_headers_it_cannot_send_as_they_are(
    store: EventStore, header: dict[str, str], reason: str
) -> None:
    """A header that could not be written unchanged is a typed refusal, and nothing is sent."""
    with pytest.raises(InvalidHeaderError, match=reason):
        await store.append(evidence("a1"), headers=header)
    assert [r.sequence async for r in store.read_all()] == []


@pytest.mark.parametrize(
    "header", [{"Nats-Rollup": "sub"}, {"Nats-Rollup": "all"}, {"Nats-TTL": "1s"}]
)
async def test_stream_refuses_rollup_and_ttl_from_raw_producers(
    store: EventStore, header: dict[str, str]
) -> None:
    """A producer bypassing the store cannot erase or expire evidence with control headers."""
    await store.append(evidence("a1"))
    payload = evidence("a2").model_dump_json().encode()
    reply = await store.client.nc.request("rp.evidence.t1.e1", payload, headers=header, timeout=2)
    assert b"error" in reply.data
    assert [r.event.id async for r in store.read("t1", "e1") if r.event] == ["a1"]
