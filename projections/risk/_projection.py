"""The risk projection: evidence in, one assessment per evidence event out, in entity order.

Exactly once: the assessment's ``Nats-Msg-Id`` is derived from the evidence's
stream position, and it is published with the entity's last assessment
sequence as the expected version. A redelivery, a restart or a racing (zombie)
worker therefore either finds the evidence already applied in the entity's
state, or has its publish refused; on a refusal the state is re-read from the
last assessment and the message handled again.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from analyzers import (
    EVIDENCE_RECORDED,
    AnalyzerConfig,
    Assessment,
    DependencyUnavailable,
    EntityRiskState,
    Evidence,
    EvidenceData,
    assess,
    conservative_assessment,
)
from eventstore import NO_STREAM, CloudEvent
from projections._deadletter import projection_source
from projections._dlq import REPLAY_HEADER
from projections._message import Message, Output, Result
from projections.errors import UnexpectedEventTypeError
from projections.risk._events import ASSESSED, EvidenceRef, RiskAssessedData

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from analyzers import Enricher, EnrichmentSignal
    from eventstore import AppendResult, EventStore

__all__ = ["RiskProjection"]

_log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class _Known:
    """An entity's analyzer state and the stream sequence of its last assessment (0: none)."""

    state: EntityRiskState
    version: int


class RiskProjection:
    """Scores evidence with the analyzer and writes ``riskpipe.risk.assessed.v1`` events."""

    def __init__(  # noqa: PLR0913 - collaborators and switches, all keyword-only
        self,
        store: EventStore,
        *,
        config: AnalyzerConfig,
        clock: Callable[[], datetime],
        name: str = "risk",
        enricher: Enricher | None = None,
        degraded_mode: bool = False,
        cache_size: int = 100_000,
    ) -> None:
        self.store = store
        self.name = name
        self.config = config
        self.enricher = enricher
        self.degraded_mode = degraded_mode
        self._clock = clock
        self._cache: OrderedDict[str, _Known] = OrderedDict()
        self._cache_size = cache_size

    # -- the handler ------------------------------------------------------------------

    async def handle(self, message: Message) -> Result:
        """Assess one evidence message (or skip it when its entity already includes it)."""
        event = self._decode(message)
        evidence = self._evidence(event, message)
        known = await self._known(message)
        if evidence.sequence <= known.state.last_sequence:
            return Result.commit((), "duplicate_skipped")
        assessment, state = await self._assess(message, known.state, evidence)
        message.context["pending_state"] = state
        message.context["level"] = assessment.level.value
        output = Output(
            self._assessment_event(event, message, assessment, state),
            expected_version=known.version or NO_STREAM,
        )
        return Result.commit((output,), "assessed")

    def committed(self, message: Message, results: list[AppendResult]) -> None:
        """Remember the entity's new state and version once its assessment is stored."""
        state = message.context.get("pending_state")
        if state is not None and results:
            self._remember(message.delivery.subject, _Known(state, results[-1].version))

    def conflicted(self, message: Message) -> None:
        """Forget the entity's cached state: someone else assessed it; re-read it."""
        self._cache.pop(message.delivery.subject, None)

    # -- steps ------------------------------------------------------------------------

    def _decode(self, message: Message) -> CloudEvent:
        limit = self.store.config.max_payload_bytes
        event = self.store.schemas.parse(message.delivery.data, max_bytes=limit)
        message.context["event"] = event
        structlog.contextvars.bind_contextvars(evidence_id=event.id)
        if event.type != EVIDENCE_RECORDED:
            raise UnexpectedEventTypeError(event.type, EVIDENCE_RECORDED)
        return event

    def _evidence(self, event: CloudEvent, message: Message) -> Evidence:
        data = self.store.schemas.typed_data(event)
        assert isinstance(data, EvidenceData)  # noqa: S101 - the registry maps the type to it
        return Evidence.from_data(
            data,
            event_id=event.id,
            source=event.source,
            sequence=message.delivery.stream_seq,
            event_time=event.time,
        )

    async def _known(self, message: Message) -> _Known:
        key = message.delivery.subject
        if (known := self._cache.get(key)) is not None:
            self._cache.move_to_end(key)
            return known
        subject = self.store.config.subject("risk", message.tenant, message.entity)
        last = await self.store.last(subject)
        if last is None:
            known = _Known(EntityRiskState.initial(), 0)
        else:
            data = self.store.schemas.typed_data(last.event) if last.event else None
            if not isinstance(data, RiskAssessedData):
                raise TypeError(
                    f"last message on {subject} (seq {last.sequence}) is not an assessment"
                )
            known = _Known(data.state, last.sequence)
        self._remember(key, known)
        return known

    def _remember(self, key: str, known: _Known) -> None:
        self._cache[key] = known
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    async def _assess(
        self, message: Message, state: EntityRiskState, evidence: Evidence
    ) -> tuple[Assessment, EntityRiskState]:
        if self.enricher is None:
            return assess(state, evidence, config=self.config)
        try:
            signal: EnrichmentSignal = await self.enricher.enrich(
                message.tenant, message.entity, evidence
            )
        except DependencyUnavailable:
            if not self.degraded_mode:
                raise
            _log.warning("risk.degraded_assessment", reason="enrichment unavailable")
            return conservative_assessment(state, evidence, config=self.config)
        return assess(state, evidence, config=self.config, enrichment=signal)

    def _assessment_event(
        self, event: CloudEvent, message: Message, assessment: Assessment, state: EntityRiskState
    ) -> CloudEvent:
        delivery = message.delivery
        replay_of = delivery.headers.get(REPLAY_HEADER)
        data = RiskAssessedData(
            projection=self.name,
            evidence=EvidenceRef(
                id=event.id,
                source=event.source,
                stream=delivery.stream,
                sequence=delivery.stream_seq,
                replay_of=int(replay_of) if replay_of and replay_of.isdigit() else None,
            ),
            assessment=assessment,
            state=state,
        )
        return CloudEvent(
            id=f"{delivery.stream}-{delivery.stream_seq}",
            source=projection_source(self.name),
            type=ASSESSED,
            subject=message.entity,
            tenant=message.tenant,
            time=self._clock(),
            causationid=event.id,
            correlationid=event.correlationid,
            data=data.model_dump(mode="json"),
        )
