"""The PubAck-ack window: evidence assessed and not acknowledged yet, as a chaos run sees it."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from eventstore import partition_of
from riskpipe.chaos._window import AckWindow

if TYPE_CHECKING:
    from eventstore import EventStore


def _id(sequence: int) -> dict[str, str]:
    """The headers of the risk projection's assessment of evidence ``sequence``."""
    return {"Nats-Msg-Id": f"24:riskpipe/projection/risk:EVIDENCE-{sequence}"}


async def _until(window: AckWindow, partitions: set[int], expected: set[int]) -> set[int]:
    """The window of ``partitions`` once it is ``expected`` (or after 10 s: whatever it is)."""
    deadline = time.monotonic() + 10.0
    seen = window.in_window(partitions)
    # the subscriptions' callbacks run in tasks of their own, with nothing to await
    while seen != expected and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
        seen = window.in_window(partitions)
    return seen


async def test_assessed_evidence_is_in_the_window_until_its_ack(store: EventStore) -> None:
    """Seen assessed: in its entity's partition's window; acked (v1 or v2 subject): out of it."""
    window = AckWindow(store, "risk")
    await window.start()
    nc, stream = store.client.nc, store.config.stream_for("evidence")
    partition = partition_of("t1", "e1", store.config.partitions)
    others = set(range(store.config.partitions)) - {partition}
    try:
        for sequence in (41, 42, 43):
            await nc.publish("rp.risk.t1.e1", b"{}", headers=_id(sequence))
        await nc.publish("rp.risk.t1.e1", b"{}", headers={"Nats-Msg-Id": "other:x-44"})
        await nc.publish("rp.risk.t1.e1", b"{}")
        assert await _until(window, {partition}, {41, 42, 43}) == {41, 42, 43}
        assert window.in_window(others) == set()
        await nc.publish(f"$JS.ACK.{stream}.risk-{partition}.1.41.7.1796600000.0", b"+ACK")
        await nc.publish(f"$JS.ACK.dom.acc.{stream}.risk-{partition}.1.42.8.1796600000.0.x", b"")
        await nc.publish(f"$JS.ACK.{stream}.risk-{partition}.1.43.9.1796600000.0", b"-NAK")
        await nc.publish(f"$JS.ACK.{stream}.shadow-{partition}.1.43.9.1796600000.0", b"+ACK")
        assert await _until(window, {partition}, {43}) == {43}
        await store.client.nc.flush()
        await asyncio.sleep(0.2)  # the nak and the other consumer's ack had their turn too
        assert window.in_window({partition}) == {43}, "a nak or another consumer's ack is not it"
    finally:
        await window.stop()


async def test_an_ack_seen_before_its_assessment_still_closes_it(store: EventStore) -> None:
    """On a cluster the two subjects may arrive in either order; aiming waits, then gives up."""
    window = AckWindow(store, "risk")
    await window.start()
    nc, stream = store.client.nc, store.config.stream_for("evidence")
    partition = partition_of("t1", "e2", store.config.partitions)
    try:
        await nc.publish(f"$JS.ACK.{stream}.risk-{partition}.1.7.1.1796600000.0", b"+ACK")
        deadline = time.monotonic() + 10.0
        while 7 not in window._acked and time.monotonic() < deadline:  # noqa: ASYNC110, SLF001
            await asyncio.sleep(0.01)
        await nc.publish("rp.risk.t1.e2", b"{}", headers=_id(7))
        await nc.publish("rp.risk.t1.e2", b"{}", headers=_id(6))  # after 7 on one subscription
        assert await _until(window, {partition}, {6}) == {6}, "7 was acked before it was seen"
        other = partition_of("t1", "e3", store.config.partitions)
        assert other != partition
        assert await window.aim({other}, 0.2) == set()
        aiming = asyncio.create_task(window.aim({other}, 10.0))
        await asyncio.sleep(0.05)
        await nc.publish("rp.risk.t1.e3", b"{}", headers=_id(8))
        assert await aiming == {8}
    finally:
        await window.stop()
