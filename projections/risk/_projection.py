"""The risk projection: evidence in, one assessment per evidence event out, in entity order.

Exactly once: the assessment's ``Nats-Msg-Id`` is derived from the evidence's
stream position, and it is published with the entity's last assessment
sequence as the expected version. A redelivery, a restart or a racing (zombie)
worker therefore either finds the evidence already handled (at or below the
entity's cursor), or has its publish refused; on a refusal the state is
re-read from the last assessment and the message handled again.

In order: before assessing evidence ``S`` of an entity, the projection asks
the stream for the entity's first evidence after its cursor. If that is an
earlier one (delivered to a worker that died, or to another worker), it is
handled first, in the same commit. So a redelivery that arrives late can never
be overtaken by the evidence that followed it.
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal, Protocol

import structlog
from opentelemetry import trace

from analyzers import (
    EVIDENCE_RECORDED_V2,
    AnalyzerConfig,
    Assessment,
    DependencyUnavailable,
    EnrichmentSignal,
    EntityRiskState,
    Evidence,
    EvidenceDataV2,
    ReviewSignal,
    applied_modifier,
    assess,
    conservative_assessment,
)
from analyzers.enrichment import delivery as enrichment_delivery
from eventstore import NO_STREAM, CloudEvent, Delivery
from eventstore.errors import DecodeError
from projections._deadletter import dead_letter, dlq_subject
from projections._message import CHAIN, Message, Output, Result, stored_headers
from projections.errors import (
    ConfigUnavailableError,
    ForeignMessagesError,
    MisaddressedEventError,
    UnexpectedEventTypeError,
)
from projections.risk._events import (
    LIVE_OUTPUT,
    AssessmentOutput,
    RiskAssessedData,
    assessment_event,
    evidence_event,
    evidence_ref,
    latest_evidence,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import datetime

    from prometheus_client import Counter
    from pydantic import BaseModel

    from analyzers import Enricher
    from eventstore import AppendResult, EventStore, ExpectedVersion, RawMessage, RecordedEvent
    from projections.risk._metrics import RiskMetrics

__all__ = ["ConfigSelection", "OwnConfig", "RiskProjection"]

_log = structlog.get_logger(__name__)
tracer = trace.get_tracer("projections.risk")
_PERMANENT = (DecodeError, UnexpectedEventTypeError, ValueError)
FOREIGN_WALK_LIMIT = 512
"""Messages of an entity's risk subject read, at most, to find its last valid assessment."""
_FIRST_WINDOW = 64
"""Stream sequences the walk back looks through first (then four times more each time)."""


class ConfigSelection(Protocol):
    """Which analyzer config scores the evidence at an evidence stream sequence."""

    def at(self, sequence: int) -> AnalyzerConfig | None:
        """The config for evidence ``sequence``: cheap, called once per message.

        ``None``: none was chosen for that position; the projection's own scores it.

        Raises:
            ConfigUnavailableError: it is not known yet, or cannot be loaded.
        """
        ...

    async def refresh(self) -> None:
        """Learn of configs that took effect since the last look (never raises)."""


@dataclass(frozen=True, slots=True)
class OwnConfig:
    """The projection's own config at every position: promotions are not followed."""

    def at(self, sequence: int) -> AnalyzerConfig | None:  # noqa: ARG002 - same everywhere
        """``None``: the projection's own config."""
        return None

    async def refresh(self) -> None:
        """Nothing to learn."""


@dataclass(slots=True)
class _Walk:
    """One read of an entity's state: its risk subject, and the foreign messages met on it."""

    subject: str
    output: AssessmentOutput = LIVE_OUTPUT
    looked: int = 0
    foreign: list[int] = field(default_factory=list)
    reason: str = ""

    def assessment_in(self, store: EventStore, raw: RawMessage) -> RiskAssessedData | None:
        """The assessment ``raw`` holds, validated; ``None`` (counted as foreign) if none.

        Foreign: not an event, an event of another type (a live assessment
        on a shadow run's subject is foreign too), or an assessment whose
        envelope names another entity than the subject it is stored on.
        """
        self.looked += 1
        try:  # validated once, as evidence is: the envelope, then the typed data
            event, data = store.decoded(raw)
        except DecodeError as exc:
            self.reason = f"not a valid event: {exc}"
        else:
            if not isinstance(data, RiskAssessedData) or event.type != self.output.type:
                self.reason = f"not an assessment: {event.type}"
            elif self.output.subject(store.config, event.tenant, event.subject) != raw.subject:
                self.reason = f"an assessment of {event.tenant}/{event.subject}"
            else:
                return data
        self.foreign.append(raw.seq)
        return None


@dataclass(frozen=True, slots=True)
class _Known:
    """An entity's analyzer state, its last assessment's sequence (0: none), and its cursor."""

    state: EntityRiskState
    version: int
    cursor: int


@dataclass(frozen=True, slots=True)
class _Decoded:
    """A delivery's evidence as :meth:`RiskProjection.prepare` decoded it: envelope and data."""

    event: CloudEvent
    data: BaseModel


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
        enrich_patterns: frozenset[str] = frozenset(),
        degraded_mode: bool = False,
        cache_size: int = 100_000,
        metrics: RiskMetrics | None = None,
        reviews: Callable[[str, str, datetime], ReviewSignal | None] | None = None,
        output: AssessmentOutput = LIVE_OUTPUT,
        configs: ConfigSelection | None = None,
    ) -> None:
        self.store = store
        self.output = output
        """Where its assessments go: the live ones to RISK, a shadow run's to SHADOW."""
        self.name = name
        self.config = config
        """The worker's own config: what scores a position ``configs`` chose none for."""
        self.configs: ConfigSelection = configs or OwnConfig()
        """The config of each evidence position (docs/promotion.md)."""
        self.enricher = enricher
        self.enrich_patterns = enrich_patterns
        """The patterns whose evidence is enriched (empty: every pattern's)."""
        self.degraded_mode = degraded_mode
        self._clock = clock
        self._cache: OrderedDict[str, _Known] = OrderedDict()
        self._cache_size = cache_size
        self._metrics = metrics
        self._reviews = reviews
        """The decisions about an entity in effect at a moment (docs/review.md, feedback)."""
        self._assessed_by: dict[tuple[str, str], Counter] = {}  # labelled children, looked up once
        if metrics is not None:
            metrics.analyzer.info(
                {"version": config.analyzer_version, "config_fingerprint": config.fingerprint()}
            )

    # -- the handler ------------------------------------------------------------------

    async def handle(self, message: Message) -> Result:
        """Assess one evidence message, after any earlier one of its entity still unhandled.

        A config that is not known or cannot be loaded for a position holds
        the message: the config log is read again once, then the runner
        pauses and asks again later (nothing committed, nothing acked).
        Every enrichment request made meanwhile names the delivery it serves.
        """
        with enrichment_delivery(message.delivery.num_delivered):
            try:
                return await self._handle(message)
            except ConfigUnavailableError:
                await self.configs.refresh()
            try:
                return await self._handle(message)
            except ConfigUnavailableError as exc:
                return Result.pause(exc.retry_in, str(exc))

    async def _handle(self, message: Message) -> Result:
        event = self._decode(message)
        known = await self._known(message)
        if message.sequence <= known.cursor:
            return Result.commit((), "duplicate_skipped")
        outputs, known = await self._catch_up(message, known)
        output, known = await self._assessed(message, event, known, chained=bool(outputs))
        message.context["pending"] = known
        message.context["assessments"] = [
            o.data.assessment for o in (*outputs, output) if isinstance(o.data, RiskAssessedData)
        ]
        return Result.commit((*outputs, output), "assessed")

    async def is_handled(self, message: Message) -> bool:
        """Whether the entity's stored cursor is already at or past this message."""
        self._cache.pop(message.delivery.subject, None)
        return message.sequence <= (await self._known(message)).cursor

    def committed(self, message: Message, results: list[AppendResult]) -> None:
        """Remember the entity's new state, version and cursor once its outputs are stored."""
        known: _Known | None = message.context.get("pending")
        risk = [
            r for r in results if r.stream == self.store.config.stream_for(self.output.category)
        ]
        if known is not None and risk:
            self._remember(
                message.delivery.subject, _Known(known.state, risk[-1].version, known.cursor)
            )
        if self._metrics is not None and risk:
            for assessment in message.context.get("assessments", ()):
                key = (assessment.level.value, "true" if assessment.degraded else "false")
                if (counter := self._assessed_by.get(key)) is None:
                    counter = self._assessed_by[key] = self._metrics.assessments.labels(*key)
                counter.inc()

    def conflicted(self, message: Message) -> None:
        """Forget the entity's cached state: someone else assessed it; re-read it."""
        self._cache.pop(message.delivery.subject, None)

    # -- steps ------------------------------------------------------------------------

    def prepare(self, deliveries: Sequence[Delivery]) -> list[_Decoded | None]:
        """Decode a fetched batch's evidence in one pass, before any of it is handled.

        Decoding every message of the batch in a row, then handling each, costs
        less than alternating the two per message. Each message's handling
        takes its decoded event from here (``Message.prepared``); one that does
        not decode gets ``None`` and is decoded again when handled, where its
        error takes the usual way to the DLQ.
        """
        decode, limit = self.store.schemas.decode, self.store.config.max_payload_bytes
        decoded: list[_Decoded | None] = []
        for delivery in deliveries:
            try:
                event, data = decode(
                    delivery.data, headers=stored_headers(delivery), max_bytes=limit
                )
            except DecodeError:
                decoded.append(None)
            else:
                decoded.append(_Decoded(event, data))
        return decoded

    def _decode(self, message: Message) -> CloudEvent:
        if isinstance(prepared := message.prepared, _Decoded):
            event, data = prepared.event, prepared.data
        else:
            event, data = self.store.schemas.decode(
                message.delivery.data,
                headers=message.stored_headers,
                max_bytes=self.store.config.max_payload_bytes,
            )
        message.context["event"] = event
        message.context["data"] = data
        message.log["evidence_id"] = event.id
        if event.type != EVIDENCE_RECORDED_V2:  # every version of evidence is read as the latest
            raise UnexpectedEventTypeError(event.type, EVIDENCE_RECORDED_V2)
        self._check_address(event, message.delivery.subject)
        return event

    def _check_address(self, event: CloudEvent, subject: str) -> None:
        """Refuse evidence whose subject is not the one its envelope names.

        A producer writing around the store could put one entity's evidence
        on another's subject, or on a subject with a wildcard or the wrong
        number of tokens: its subject must never decide whose evidence it is,
        nor serve as a filter.

        Raises:
            MisaddressedEventError: the subject and the envelope disagree.
        """
        config = self.store.config
        expected = config.stored_subject("evidence", event.tenant, event.subject)
        if subject != expected:
            published = config.subject("evidence", event.tenant, event.subject)
            raise MisaddressedEventError(subject, expected, published)

    def _evidence(self, event: CloudEvent, message: Message) -> Evidence:
        data = message.context.get("data")
        if not isinstance(data, EvidenceDataV2):
            data = latest_evidence(self.store.schemas, event)[1]  # as stored: read it as v2
        return Evidence.from_data(
            data,
            event_id=event.id,
            source=event.source,
            sequence=message.sequence,
            event_time=event.time,
        )

    async def _known(self, message: Message) -> _Known:
        key = message.delivery.subject
        if (known := self._cache.get(key)) is not None:
            self._cache.move_to_end(key)
            return known
        subject = self.output.subject(self.store.config, message.tenant, message.entity)
        last = await self.store.last_message(subject)
        if last is None:
            known = _Known(EntityRiskState.initial(), 0, 0)
        else:
            walk = _Walk(subject, self.output)
            data = walk.assessment_in(self.store, last)
            if data is None:
                data = await self._last_valid(walk, last.seq)
            self._found_foreign(walk)
            initial = (EntityRiskState.initial(), 0)
            state, cursor = (data.state, data.cursor) if data is not None else initial
            known = _Known(state, last.seq, cursor)  # fenced on the true last sequence
        self._remember(key, known)
        return known

    async def _last_valid(self, walk: _Walk, before: int) -> RiskAssessedData | None:
        """The last valid assessment on the walk's subject below ``before`` (``None``: none).

        Looks back through windows of the stream, each four times as wide as
        the one after it, and reads each window forwards with one direct get
        per message of the subject (the server skips every other subject).
        So an entity's last assessment far behind other entities' traffic
        costs a few requests, and every message read is one of the entity's.

        Raises:
            ForeignMessagesError: more than ``FOREIGN_WALK_LIMIT`` messages
                read without reaching the last valid assessment.
        """
        stream, end, width = (
            self.store.config.stream_for(self.output.category),
            before,
            _FIRST_WINDOW,
        )
        while end > 1:
            start = max(1, end - width)
            found: RiskAssessedData | None = None
            seq = start
            while (
                raw := await self.store.client.direct_get(stream, seq, next_by_subject=walk.subject)
            ) is not None and raw.seq < end:
                if walk.looked >= FOREIGN_WALK_LIMIT:
                    self._found_foreign(walk)
                    raise ForeignMessagesError(walk.subject, walk.looked)
                found = walk.assessment_in(self.store, raw) or found
                seq = raw.seq + 1
            if found is not None:
                return found
            end, width = start, width * 4
        return None

    def _found_foreign(self, walk: _Walk) -> None:
        """Report the foreign messages a read of the entity's state stepped over."""
        if not walk.foreign:
            return
        _log.warning(
            "risk.foreign_messages",
            subject=walk.subject,
            sequences=walk.foreign[:10],
            count=len(walk.foreign),
            reason=walk.reason,
        )
        if self._metrics is not None:
            self._metrics.foreign_messages.inc(len(walk.foreign))
        walk.foreign.clear()

    def _remember(self, key: str, known: _Known) -> None:
        self._cache[key] = known
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    async def _assessed(
        self, message: Message, event: CloudEvent, known: _Known, *, chained: bool
    ) -> tuple[Output, _Known]:
        evidence = self._evidence(event, message)
        assessment, state = await self._assess(message, known.state, evidence)
        after = _Known(state, known.version, message.sequence)
        expected: ExpectedVersion | Literal["chain"] = (
            CHAIN if chained else (known.version or NO_STREAM)
        )
        event_out, data = self._assessment_event(event, message, assessment, after)
        subject = None  # the live projection's: derived from the type, as it always was
        if self.output.scope is not None:
            subject = self.output.subject(self.store.config, message.tenant, message.entity)
        return Output(event_out, expected_version=expected, subject=subject, data=data), after

    async def _catch_up(self, message: Message, known: _Known) -> tuple[list[Output], _Known]:
        """Outputs for the entity's evidence between its cursor and this message, in order."""
        outputs: list[Output] = []
        if message.delivered_here(known.cursor + 1, message.sequence - 1):
            return outputs, known  # every earlier message is handled or queued before this one
        subject, stream = message.delivery.subject, message.delivery.stream
        dead: set[int] | None = None
        while True:
            rec = await self._earlier(stream, subject, known.cursor + 1, message.sequence)
            if rec is None:
                return outputs, known
            if dead is None:
                dead = await self._dead_lettered(message)
            _log.info("risk.catch_up", earlier=rec.sequence, cursor=known.cursor)
            if rec.sequence in dead:
                known = replace(known, cursor=rec.sequence)
                continue
            earlier = self._message_for(message, rec)
            # fenced on an assessment written before it in this result (not a dead letter)
            chained = any(o.event.type == self.output.type for o in outputs)
            try:
                event = evidence_event(rec)
                self._check_address(event, rec.subject)
                earlier.context["event"] = event
                output, known = await self._assessed(earlier, event, known, chained=chained)
            except _PERMANENT as exc:
                output = dead_letter(
                    earlier,
                    exc,
                    permanent=True,
                    now=self._clock(),
                    config=self.store.config,
                    max_bytes=self.store.payload_limit("dlq"),
                )
                known = replace(known, cursor=rec.sequence)
            outputs.append(output)

    async def _earlier(
        self, stream: str, subject: str, start: int, before: int
    ) -> RecordedEvent | None:
        """The entity's first evidence at or after ``start`` and before ``before``, if any.

        Any replica of a clustered stream answers a direct get, and one still
        catching up lacks the latest messages: trusting its "none" would skip
        the entity's earlier evidence for good (the message being handled
        moves the cursor past it). The message at ``before`` is itself on the
        subject, so a replica that has it always answers: "none" means behind,
        and the stream's leader is asked instead.
        """
        client = self.store.client
        raw = await client.direct_get(stream, start, next_by_subject=subject)
        if raw is None:
            raw = await client.leader_get(stream, start, next_by_subject=subject)
        if raw is None or raw.seq >= before:
            return None
        return self.store.recorded(raw)

    def _message_for(self, message: Message, rec: RecordedEvent) -> Message:
        delivery = Delivery(
            subject=rec.subject, data=rec.payload, headers=rec.headers, stream=rec.stream,
            stream_seq=rec.sequence, consumer_seq=0, num_delivered=1, num_pending=0,
            stored_at=rec.stored_at, reply="", header_block=rec.header_block,
        )  # fmt: skip
        return Message(
            message.projection, delivery, message.tenant, message.entity, message.max_deliver
        )

    async def _dead_lettered(self, message: Message) -> set[int]:
        """Evidence sequences of this entity that already have a dead letter.

        Read from the dead-letter stream's leader: a replica catching up may
        not have a dead letter written a moment ago, and the evidence it
        answers for would be assessed as well.
        """
        config = self.store.config
        subject = dlq_subject(config, self.name, message.tenant, message.entity)
        stream = config.stream_for("dlq")
        seqs: set[int] = set()
        seq = 1
        while (
            raw := await self.store.client.leader_get(stream, seq, next_by_subject=subject)
        ) is not None:
            rec = self.store.recorded(raw)
            if rec.event is not None and rec.event.data is not None:
                seqs.add(int(str(rec.event.data["sequence"])))
            seq = rec.sequence + 1
        return seqs

    async def _assess(
        self, message: Message, state: EntityRiskState, evidence: Evidence
    ) -> tuple[Assessment, EntityRiskState]:
        traced = message.context.get("traced", False)
        config = self.configs.at(evidence.sequence) or self.config
        review = None
        if self._reviews is not None:
            review = self._reviews(message.tenant, message.entity, self._clock())
        signal = None
        if self.enricher is not None and (
            not self.enrich_patterns or evidence.pattern in self.enrich_patterns
        ):
            try:
                with _span("enrich", traced):
                    signal = await self.enricher.enrich(message.tenant, message.entity, evidence)
            except DependencyUnavailable:
                if not self.degraded_mode:
                    raise
                _log.warning("risk.degraded_assessment", reason="enrichment unavailable")
                with _span("analyze", traced):
                    return conservative_assessment(state, evidence, config=config, review=review)
        if signal is not None:
            _warn_if_bounded(signal, config)
        with _span("analyze", traced):
            return assess(state, evidence, config=config, enrichment=signal, review=review)

    def _assessment_event(
        self, event: CloudEvent, message: Message, assessment: Assessment, known: _Known
    ) -> tuple[CloudEvent, RiskAssessedData]:
        delivery = message.delivery
        return assessment_event(
            self.name,
            event,
            evidence_ref(event, delivery.stream, delivery.stream_seq, delivery.headers),
            assessment,
            known.state,
            entity=(message.tenant, message.entity),
            cursor=known.cursor,
            time=self._clock(),
            type_=self.output.type,
        )


def _warn_if_bounded(signal: EnrichmentSignal, config: AnalyzerConfig) -> None:
    """Say so when an enricher's answer goes beyond what the config lets it apply.

    The score is safe (the analyzer holds the modifier at the bound), but a
    service that asks for more is broken or compromised: operators should know.
    """
    applied = applied_modifier(signal, config=config)
    if applied != config.enrichment_weight * signal.modifier:
        _log.warning(
            "risk.enrichment_bounded",
            provider=signal.provider,
            modifier=signal.modifier,
            applied=applied,
        )


def _span(name: str, traced: bool) -> AbstractContextManager[object]:  # noqa: FBT001 - a switch
    """A child span when tracing is on; nothing (not even a no-op span) when it is off."""
    return tracer.start_as_current_span(name) if traced else nullcontext()
