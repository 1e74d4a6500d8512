"""Every JetStream request, as each user on accounts.conf: exactly what docs/security.md says.

The table is read from the document itself (section "Every JetStream request,
by role"), so the documented permissions and the enforced ones cannot drift.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from nats_sessions import Probe

if TYPE_CHECKING:
    from riskpipe.server import NatsServer

SECURITY_DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"
_SECTION = "### Every JetStream request, by role"
ROLES = ("producer", "worker", "auditor")
# a subject of each stream, as the application writes them
STREAM_SUBJECTS = {
    "EVIDENCE": "rp.evidence.t1.e1",
    "RISK": "rp.risk.t1.e1",
    "DLQ": "rp.dlq.risk.t1.e1",
    "AUDIT": "rp.audit.t1.e1",
    "REVIEW": "rp.review.t1.e1",
    "OUTCOMES": "rp.outcome.t1.e1",
    "CONFIGS": "rp.config.riskpipe.risk",
    "SHADOW": "rp.shadow.v2.t1.e1",
    "KV_rp-checkpoints": "$KV.rp-checkpoints.risk",
    "KV_rp-leases": "$KV.rp-leases.risk.0",
}
_KV = ("KV_rp-checkpoints", "KV_rp-leases")
_NONE = "—"
_PROBE_CONSUMER = "probe"


@dataclass(frozen=True)
class Row:
    """One request of the table and, per role, where it is allowed."""

    request: str
    allowed: dict[str, frozenset[str]]
    """Per role: the streams it is allowed on, or ``{"yes"}`` for a request on no stream."""

    @property
    def per_stream(self) -> bool:
        """Whether the request names a stream (one probe per stream)."""
        return _names_a_stream(self.request)

    def subjects(self) -> dict[str, str]:
        """The subject to probe, by stream (``"yes"`` for a request on no stream)."""
        if not self.per_stream:
            return {"yes": self.request}
        return {
            stream: self.request.replace("<stream>", stream)
            .replace("<subject>", subject)
            .replace("<name>", _PROBE_CONSUMER)
            for stream, subject in STREAM_SUBJECTS.items()
        }


def _names_a_stream(request: str) -> bool:
    return "<stream>" in request or "<subject>" in request


def _cell(text: str, *, per_stream: bool) -> frozenset[str]:
    text = text.strip()
    if text == _NONE:
        return frozenset()
    if not per_stream:
        assert text == "yes", text
        return frozenset({"yes"})
    if text == "all":
        return frozenset(STREAM_SUBJECTS)
    streams: set[str] = set()
    for name in text.split(", "):
        streams.update(_KV if name == "KV" else (name,))
    assert streams <= STREAM_SUBJECTS.keys(), text
    return frozenset(streams)


def documented_table() -> list[Row]:
    """The rows of the table in docs/security.md."""
    section = SECURITY_DOC.read_text().split(_SECTION, 1)[1].split("\n#", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header == ["request", *ROLES], header
    rows = []
    for line in lines[2:]:
        first, *cells = (cell.strip() for cell in line.strip().strip("|").split(" | "))
        [request] = re.findall(r"`([^`]+)`", first)
        per_stream = _names_a_stream(request)
        allowed = {
            role: _cell(cell, per_stream=per_stream)
            for role, cell in zip(ROLES, cells, strict=True)
        }
        rows.append(Row(request, allowed))
    return rows


def test_the_table_covers_every_api_verb_the_review_named() -> None:
    """Stream, direct-get and consumer verbs, and the account-wide ones, all have a row."""
    requests = {row.request for row in documented_table()}
    for verb in (
        "INFO", "ACCOUNT.PURGE.RISKPIPE", "SERVER.REMOVE", "META.LEADER.STEPDOWN",
        "STREAM.LIST", "STREAM.NAMES",
        *(f"STREAM.{v}.<stream>" for v in (
            "CREATE", "UPDATE", "DELETE", "PURGE", "INFO", "MSG.GET", "MSG.DELETE",
            "SNAPSHOT", "RESTORE", "LEADER.STEPDOWN", "PEER.REMOVE",
        )),
        "DIRECT.GET.<stream>", "DIRECT.GET.<stream>.<subject>",
        "CONSUMER.CREATE.<stream>", "CONSUMER.CREATE.<stream>.<name>",
        "CONSUMER.CREATE.<stream>.<name>.<subject>", "CONSUMER.DURABLE.CREATE.<stream>.<name>",
        *(f"CONSUMER.{v}.<stream>.<name>" for v in (
            "DELETE", "INFO", "MSG.NEXT", "PAUSE", "UNPIN", "LEADER.STEPDOWN",
        )),
        "CONSUMER.LIST.<stream>", "CONSUMER.NAMES.<stream>",
    ):  # fmt: skip
        assert f"$JS.API.{verb}" in requests, verb


@pytest.mark.parametrize("role", ROLES)
async def test_each_request_is_allowed_exactly_where_the_table_says(
    secured_server: NatsServer, nats_passwords: dict[str, str], role: str
) -> None:
    """Each request of the table, on each stream, is allowed to ``role`` only where documented."""
    probe = await Probe.open(secured_server, role, nats_passwords[role])
    try:
        table = documented_table()
        found = {
            row.request: frozenset(
                [
                    where
                    for where, subject in row.subjects().items()
                    if await probe.may_publish(subject)
                ]
            )
            for row in table
        }
    finally:
        await probe.close()
    assert found == {row.request: row.allowed[role] for row in table}
