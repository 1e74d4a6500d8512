"""The chaos run's own reputation service: fails exactly the deliveries an evidence id asks for."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from riskpipe.chaos._enricher import ALWAYS, FlakyEnricher, transient_id


def _body(evidence_id: str) -> dict[str, object]:
    return {"tenant": "t", "entity": "e", "evidence": {"id": evidence_id}}


@pytest.mark.parametrize(("failures", "calls"), [(0, 2), (1, 1), (2, 2), (3, 1)])
async def test_fails_the_asked_deliveries_then_answers(failures: int, calls: int) -> None:
    """``transient-N-``: N deliveries of ``calls`` calls each fail with a 503, then a 200."""
    enricher = FlakyEnricher(calls=calls)
    await enricher.start()
    evidence_id = transient_id(failures, "x") if failures else "plain-1"
    try:
        async with httpx.AsyncClient() as http:  # one kept-alive connection for every call
            statuses = [
                (await http.post(enricher.url, json=_body(evidence_id))).status_code
                for _ in range(failures * calls + 2)
            ]
    finally:
        await enricher.stop()
    assert statuses == [503] * (failures * calls) + [200, 200]
    assert enricher.seen[evidence_id] == failures * calls + 2
    assert enricher.failed == failures * calls


async def test_always_fails_and_a_modifier_is_neutral() -> None:
    """``transient-always-`` never succeeds; others get modifier 0, whatever else is sent."""
    enricher = FlakyEnricher(calls=2)
    await enricher.start()
    try:
        async with httpx.AsyncClient() as http:
            always = [
                (await http.post(enricher.url, json=_body(transient_id(ALWAYS, "y")))).status_code
                for _ in range(7)
            ]
            plain = await http.post(enricher.url, json={"no": "evidence"})
    finally:
        await enricher.stop()
    assert always == [503] * 7
    assert plain.status_code == 200
    assert plain.json() == {"modifier": 0.0}


async def test_a_broken_request_closes_its_connection_only() -> None:
    """A request without a proper length is dropped; the service still answers the next one."""
    enricher = FlakyEnricher(calls=1)
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
