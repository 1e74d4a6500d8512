"""Identical assessments are settled by comparing bytes; everything else as precisely as before.

Each test replays twice, the second time with the byte comparison switched off
(every assessment then validated and compared field by field, as the replay
always did), and requires the same report.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from support.events import BASE_TIME, evidence
from support.pipeline import run_worker

from analyzers import AnalyzerConfig, EntityRiskState, Evidence, EvidenceData, assess
from eventstore import CloudEvent, encode_event
from projections.audit import replay
from projections.audit._derive import ByteVerifier
from projections.risk import ASSESSED, RiskAssessedData, evidence_ref

if TYPE_CHECKING:
    from collections.abc import Callable

    import pytest

    from eventstore import EventStore
    from projections.audit import ReplayReport
    from riskpipe.server import NatsServer


def _same_reports(fast: ReplayReport, slow: ReplayReport) -> None:
    assert fast.findings == slow.findings
    assert fast.totals == slow.totals
    assert fast.entities == slow.entities


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Record whether each byte comparison settled its assessment."""
    settled: list[bool] = []
    verified = ByteVerifier.verified

    def spy(self: ByteVerifier, *args: object) -> object:
        state = verified(self, *args)  # type: ignore[arg-type]
        settled.append(state is not None)
        return state

    monkeypatch.setattr(ByteVerifier, "verified", spy)
    return settled


def _precise_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ByteVerifier, "verified", lambda *_: None)


async def test_a_real_run_is_verified_by_bytes(
    nats_server: NatsServer, store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every assessment the projection wrote is settled by bytes, with the precise path's report."""
    events = [
        evidence(f"b{i}", entity=f"e{i % 5}", minute=i, severity=("low", "critical")[i % 3 == 0])
        for i in range(60)
    ]
    assert not [r for r in await store.append_many(events) if isinstance(r, Exception)]
    await run_worker(store, nats_server.url)
    settled = _counting(monkeypatch)
    fast = await replay(store)
    assert fast.ok
    assert fast.totals.identical == 60
    assert settled == [True] * 60
    _precise_only(monkeypatch)
    _same_reports(fast, await replay(store))


async def _expected_bytes(
    store: EventStore, event: CloudEvent, sequence: int, before: EntityRiskState | None = None
) -> tuple[bytes, EntityRiskState]:
    """The assessment the projection would store for ``event``, and the state after it."""
    data = store.schemas.typed_data(event)
    assert isinstance(data, EvidenceData)
    scored = Evidence.from_data(
        data, event_id=event.id, source=event.source, sequence=sequence, event_time=event.time
    )
    before = before or EntityRiskState.initial()
    assessment, state = assess(before, scored, config=AnalyzerConfig())
    envelope = CloudEvent(
        id=f"EVIDENCE-{sequence}", source="riskpipe/projection/risk", type=ASSESSED,
        subject=event.subject, tenant=event.tenant, time=BASE_TIME, causationid=event.id,
    )  # fmt: skip
    recorded = RiskAssessedData(
        projection="risk",
        evidence=evidence_ref(event, store.config.stream_for("evidence"), sequence, {}),
        assessment=assessment,
        state=state,
        cursor=sequence,
    )
    return encode_event(envelope, recorded), state


def _sub(pattern: str, new: str) -> Callable[[bytes], bytes]:
    """Change the first match of ``pattern`` in the stored bytes."""

    def change(payload: bytes) -> bytes:
        changed = re.sub(pattern.encode(), new.encode(), payload, count=1)
        assert changed != payload, f"test setup: {pattern!r} not in {payload!r}"
        return changed

    return change


TAMPERED: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "same": (lambda payload: payload, "identical"),
    "cursor": (_sub(r'"cursor":\d+', '"cursor":99'), "identical"),
    "time": (_sub(r'"time":"[^"]+"', '"time":"2030-01-01T00:00:00Z"'), "identical"),
    "spaced": (_sub(r'"projection":"risk"', '"projection": "risk"'), "identical"),
    "score": (_sub(r'"score":[0-9.e-]+', '"score":0.97'), "differs"),
    "negative_zero": (_sub(r'"pattern_diversity":0.0', '"pattern_diversity":-0.0'), "differs"),
    "state": (_sub(r'"evidence_count":1.0', '"evidence_count":2.0'), "differs"),
    "evidence_id": (_sub(r'"evidence":\{"id":"[^"]+"', '"evidence":{"id":"other"'), "differs"),
    "version": (_sub(r'"analyzer_version":"[^"]+"', '"analyzer_version":"0.9.0"'), "version"),
    "duplicate_key": (_sub(r'"cursor":', '"cursor":1,"cursor":'), "unreadable"),
    "bad_value": (_sub(r'"level":"[a-z]+"', '"level":"extreme"'), "unreadable"),
    "extra_field": (_sub(r'"cursor":', '"note":"x","cursor":'), "unreadable"),
    "bad_envelope": (_sub(r'"tenant":"t1"', '"tenant":"t 1"'), "unreadable"),
    "not_assessed": (_sub(r'"type":"[^"]+"', '"type":"riskpipe.risk.other.v1"'), "unreadable"),
    # the values the byte comparison takes from the record: only in canonical form
    "offset_time": (_sub(r'"time":"([^"]+)Z"', r'"time":"\1+00:00"'), "identical"),
    "naive_time": (_sub(r'"time":"([^"]+)Z"', r'"time":"\1"'), "unreadable"),
    "float_cursor": (_sub(r'"cursor":(\d+)', r'"cursor":\1.0'), "identical"),
    "text_cursor": (_sub(r'"cursor":(\d+)', r'"cursor":"\1"'), "identical"),
    "zero_cursor": (_sub(r'"cursor":\d+', '"cursor":0'), "unreadable"),
    "envelope_id": (_sub(r'"id":"EVIDENCE-\d+"', '"id":"forged-1"'), "identical"),
}


async def test_tampered_bytes_get_the_findings_of_the_precise_path(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One field changed in the stored bytes: the same finding, or none, as field by field."""
    for n, (name, (tamper, _)) in enumerate(TAMPERED.items()):
        entity = name.replace("_", "-")
        event = evidence(f"t-{entity}", entity=entity, minute=n, severity="high")
        sequence = (await store.append(event)).sequence
        payload = tamper((await _expected_bytes(store, event, sequence))[0])
        await store.append_unchecked("risk", "t1", entity, payload, msg_id=f"forged-{entity}")
    settled = _counting(monkeypatch)
    fast = await replay(store)
    assert settled.count(True) == 3, "unchanged, or changed where the replay does not compare"
    for name, (_, outcome) in TAMPERED.items():
        entity = fast.entities["t1", name.replace("_", "-")]
        finding = entity.first_finding
        if outcome == "identical":
            assert (entity.counts.identical, finding) == (1, None), name
        elif outcome == "unreadable":
            assert finding is not None, name
            assert (finding.kind, entity.counts.pending) == ("unreadable", 1), name
        else:
            assert finding is not None, name
            assert finding.kind == {"differs": "differs", "version": "version_mismatch"}[outcome]
    _precise_only(monkeypatch)
    _same_reports(fast, await replay(store))


async def test_evidence_the_projection_would_refuse_is_still_found(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stored evidence that is not valid has an assessment it should not have: an extra."""
    event = evidence("poison", entity="p1", severity="high")
    payload = event.model_dump_json(exclude_none=True).encode()
    sequence = (
        await store.append_unchecked(
            "evidence", "t1", "p1", payload.replace(b'"high"', b'"extreme"'), msg_id="poison"
        )
    ).sequence
    assessed, _ = await _expected_bytes(store, event, sequence)
    await store.append_unchecked("risk", "t1", "p1", assessed, msg_id="forged-p1")
    fast = await replay(store)
    [finding] = fast.findings
    assert finding.kind == "extra"
    assert "cannot be assessed" in finding.detail
    _precise_only(monkeypatch)
    _same_reports(fast, await replay(store))


async def test_an_invalid_assessment_read_ahead_does_not_hide_a_valid_one(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unreadable message claiming a later evidence does not end the wait for an earlier one."""
    first, second = (evidence(f"r{n}", entity="r1", minute=n) for n in range(2))
    first_seq = (await store.append(first)).sequence
    second_seq = (await store.append(second)).sequence
    assessed_first, state = await _expected_bytes(store, first, first_seq)
    assessed_second, _ = await _expected_bytes(store, second, second_seq, state)
    invalid = _sub(r'"level":"[a-z]+"', '"level":"extreme"')(assessed_second)
    for n, payload in enumerate((invalid, assessed_first, assessed_second)):
        await store.append_unchecked("risk", "t1", "r1", payload, msg_id=f"r1-{n}")
    fast = await replay(store)
    assert (fast.totals.identical, fast.totals.unreadable) == (2, 1)
    assert [f.kind for f in fast.findings] == ["unreadable"]
    _precise_only(monkeypatch)
    _same_reports(fast, await replay(store))
