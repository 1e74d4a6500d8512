"""Requests counted by route template and status, timed, and logged without their tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING

from structlog.testing import capture_logs

if TYPE_CHECKING:
    import httpx
    from prometheus_client import CollectorRegistry
    from support.api import Tokens


async def test_requests_are_counted_timed_and_logged_without_tokens(
    client: httpx.AsyncClient,
    tokens: Tokens,
    letters: dict[str, list[int]],
    registry: CollectorRegistry,
) -> None:
    """Route templates, not paths, label the metrics; the access line names who, not the token."""
    headers = tokens.header("operator", "acme")
    with capture_logs() as logs:
        for sequence in (letters["acme"][0], letters["globex"][0], 10_000):
            await client.get(f"/api/dead-letters/{sequence}?x", headers=headers)
            await client.get(f"/api/dead-letters/{sequence}", headers=headers)
        await client.get("/api/made-up/path/1")
        await client.get("/api/whoami", headers={"Authorization": "Bearer wrong-token"})

    def count(route: str, status: str, method: str = "GET") -> float | None:
        labels = {"route": route, "method": method, "status": status}
        return registry.get_sample_value("riskpipe_api_requests_total", labels)

    template = "/api/dead-letters/{sequence}"
    assert count(template, "200") == 1
    assert count(template, "404") == 2
    assert count(template, "422") == 3
    assert count("unmatched", "404") == 1
    assert count("/api/whoami", "401") == 1
    timed = registry.get_sample_value(
        "riskpipe_api_request_duration_seconds_count", {"route": template, "method": "GET"}
    )
    assert timed == 6
    lines = [e for e in logs if e["event"] == "api.request"]
    assert len(lines) == 8
    assert {(e.get("name"), e.get("role")) for e in lines} == {
        ("operator-acme", "operator"),
        (None, None),
    }
    secrets = [*tokens.plain.values(), "wrong-token"]
    assert not [e for e in logs for s in secrets if s in repr(e)]
