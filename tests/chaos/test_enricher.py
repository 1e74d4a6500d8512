"""The chaos run's own reputation service: fails exactly the deliveries an evidence id asks for."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from analyzers.enrichment import DELIVERY_HEADER
from riskpipe.chaos._enricher import ALWAYS, FlakyEnricher, transient_id


def _body(evidence_id: str) -> dict[str, object]:
    return {"tenant": "t", "entity": "e", "evidence": {"id": evidence_id}}


async def _statuses(
    enricher: FlakyEnricher, evidence_id: str, calls: list[int | None]
) -> list[int]:
    """The status of one call per item of ``calls``, each made in that delivery (None: unsaid)."""
    async with httpx.AsyncClient() as http:  # one kept-alive connection for every call
        return [
            (
                await http.post(
                    enricher.url,
                    json=_body(evidence_id),
                    headers={} if number is None else {DELIVERY_HEADER: str(number)},
                )
            ).status_code
            for number in calls
        ]


@pytest.mark.parametrize(("failures", "calls"), [(0, 2), (1, 1), (2, 2), (3, 1)])
async def test_fails_the_asked_deliveries_then_answers(failures: int, calls: int) -> None:
    """``transient-N-``: every call of the first N deliveries fails with a 503, then a 200."""
    enricher = FlakyEnricher()
    await enricher.start()
    evidence_id = transient_id(failures, "x") if failures else "plain-1"
    numbers = [n for n in range(1, failures + 3) for _ in range(calls)]
    try:
        statuses = await _statuses(enricher, evidence_id, numbers)
    finally:
        await enricher.stop()
    assert statuses == [503] * (failures * calls) + [200] * (2 * calls)
    assert enricher.seen[evidence_id] == len(numbers)
    assert enricher.failed == failures * calls


async def test_deliveries_cut_short_count_as_much_as_whole_ones() -> None:
    """A delivery that made one call, or none at all, is still one of the N that fail.

    Counting calls instead, ``transient-3-`` would fail its fourth delivery
    here (it had made only 4 of the 6 calls of three whole deliveries), and a
    fifth: a dead letter for evidence that must be assessed.
    """
    enricher = FlakyEnricher()
    await enricher.start()
    evidence_id = transient_id(3, "cut")
    try:
        # delivery 1 whole (2 calls), 2 cut short after 1 call, 3 lost (no call), 4 and 5
        statuses = await _statuses(enricher, evidence_id, [1, 1, 2, 4, 5])
    finally:
        await enricher.stop()
    assert statuses == [503, 503, 503, 200, 200]


async def test_a_call_that_names_no_delivery_is_refused_for_transient_evidence() -> None:
    """Without ``Riskpipe-Delivery`` a transient evidence gets a 400; other evidence an answer."""
    enricher = FlakyEnricher()
    await enricher.start()
    try:
        refused = await _statuses(enricher, transient_id(1, "z"), [None])
        plain = await _statuses(enricher, "plain-2", [None])
    finally:
        await enricher.stop()
    assert refused == [400]
    assert plain == [200]
    assert enricher.unnumbered == 1


async def test_always_fails_and_a_modifier_is_neutral() -> None:
    """``transient-always-`` never succeeds; others get modifier 0, whatever else is sent."""
    enricher = FlakyEnricher()
    await enricher.start()
    try:
        always = await _statuses(enricher, transient_id(ALWAYS, "y"), [1, 2, 3, 4, 5, 6, None])
        async with httpx.AsyncClient() as http:
            plain = await http.post(enricher.url, json={"no": "evidence"})
    finally:
        await enricher.stop()
    assert always == [503] * 7
    assert plain.status_code == 200
    assert plain.json() == {"modifier": 0.0}


async def test_a_broken_request_closes_its_connection_only() -> None:
    """A request without a proper length is dropped; the service still answers the next one."""
    enricher = FlakyEnricher()
    await enricher.start()
    try:
        host, port = enricher.url.split("//")[1].split("/")[0].split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /reputation HTTP/1.1\r\nContent-Length: -5\r\n\r\n")
        await writer.drain()
        assert await reader.read() == b""  # closed without an answer
        writer.close()
        async with httpx.AsyncClient() as http:
            answer = await http.post(enricher.url, json=_body("after"))
    finally:
        await enricher.stop()
    assert answer.status_code == 200
