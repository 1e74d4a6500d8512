"""The events the risk projection writes, and the registry entries for every event it knows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from analyzers import (
    EVIDENCE_RECORDED,
    EVIDENCE_RECORDED_V2,
    EVIDENCE_TYPES,
    Assessment,
    EntityRiskState,
    EvidenceData,
    EvidenceDataV2,
    trusted,
    upcast_evidence,
)
from eventstore import EventSchemas, StreamSpec
from eventstore.errors import DecodeError

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from eventstore import RecordedEvent, StoreConfig
from eventstore import CloudEvent
from projections._deadletter import DEAD_LETTERED, DeadLetterData, projection_source
from projections._dlq import (
    DLQ_PURGED,
    DLQ_REPLAY_STARTED,
    DLQ_REPLAYED,
    REPLAY_HEADER,
    DlqActionData,
)
from projections.errors import UnexpectedEventTypeError

__all__ = [
    "ASSESSED",
    "EVIDENCE_STREAM",
    "LIVE_OUTPUT",
    "RISK_STREAM",
    "AssessmentOutput",
    "EvidenceRef",
    "RiskAssessedData",
    "assessment_event",
    "build_schemas",
    "evidence_event",
    "evidence_ref",
    "latest_evidence",
]

ASSESSED = "riskpipe.risk.assessed.v1"

EVIDENCE_STREAM = StreamSpec(category="evidence", name="EVIDENCE", atomic=True, partitioned=True)
"""Evidence, as producers append it: ``<prefix>.evidence.<tenant>.<entity>``, stored with its
partition, immutable."""
RISK_STREAM = StreamSpec(category="risk", name="RISK", atomic=True, payload_factor=2)
"""Assessments, one per evidence: ``<prefix>.risk.<tenant>.<entity>``, immutable."""


@dataclass(frozen=True, slots=True)
class AssessmentOutput:
    """Where a risk projection writes its assessments: their category, type and subjects.

    The live projection writes ``riskpipe.risk.assessed.v1`` on
    ``<prefix>.risk.<tenant>.<entity>``. A shadow run writes the same data
    under its own type, on subjects that carry a ``scope`` token after the
    category (``<prefix>.shadow.<version>.<tenant>.<entity>``), so that each
    entity's state chain, and its fence, is the run's own.
    """

    category: str = "risk"
    type: str = ASSESSED
    scope: str | None = None
    """A token between the category and the tenant (``None``: none)."""

    def subject(self, config: StoreConfig, tenant: str, entity: str) -> str:
        """The subject an entity's assessments are stored on.

        Raises:
            ValueError: ``tenant`` or ``entity`` is not a valid token.
        """
        subject = config.subject(self.category, tenant, entity)
        if self.scope is None:
            return subject
        prefix = f"{config.prefix}.{self.category}."
        return subject.replace(prefix, f"{prefix}{self.scope}.", 1)


LIVE_OUTPUT = AssessmentOutput()
"""The live risk projection's assessments."""


class EvidenceRef(BaseModel):
    """Which evidence an assessment follows: its identity and where it is stored."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    source: str
    stream: str
    sequence: int = Field(ge=1)
    replay_of: int | None = None
    """For evidence re-sent from the dead-letter queue: the original's stream sequence."""


class RiskAssessedData(BaseModel):
    """The ``data`` of ``riskpipe.risk.assessed.v1``.

    ``state`` is the entity's analyzer state after this evidence: the next
    assessment continues from it, and an audit can re-derive it. ``cursor``
    is the projection's position in the entity's evidence.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    projection: str
    evidence: EvidenceRef
    assessment: Assessment
    state: EntityRiskState
    cursor: int = Field(ge=1)
    """The highest evidence sequence of this entity handled so far (assessed or
    dead-lettered); the next assessment continues after it."""


def build_schemas() -> EventSchemas:
    """The registry of every event type riskpipe reads or writes.

    Evidence has two versions; v1 is read as v2 (:func:`analyzers.upcast_evidence`),
    and an event that names no type is v1, as it always was.
    """
    schemas = EventSchemas(default_type=EVIDENCE_RECORDED)
    schemas.register(EVIDENCE_RECORDED, EvidenceData, category="evidence")
    schemas.register(EVIDENCE_RECORDED_V2, EvidenceDataV2, category="evidence")
    schemas.register_upcaster(EVIDENCE_RECORDED, EVIDENCE_RECORDED_V2, upcast_evidence)
    schemas.register(ASSESSED, RiskAssessedData, category="risk")
    schemas.register(DEAD_LETTERED, DeadLetterData, category="dlq")
    schemas.register(DLQ_REPLAYED, DlqActionData, category="audit")
    schemas.register(DLQ_PURGED, DlqActionData, category="audit")
    schemas.register(DLQ_REPLAY_STARTED, DlqActionData, category="audit")
    return schemas


def evidence_event(rec: RecordedEvent) -> CloudEvent:
    """The evidence event a stored record holds, as stored (any version of evidence).

    Raises:
        DecodeError: the record is not a valid event.
        UnexpectedEventTypeError: it is not evidence.
    """
    if rec.event is None:
        raise rec.error or DecodeError(f"undecodable message at sequence {rec.sequence}")
    if rec.event.type not in EVIDENCE_TYPES:
        raise UnexpectedEventTypeError(rec.event.type, EVIDENCE_RECORDED_V2)
    return rec.event


def latest_evidence(schemas: EventSchemas, event: CloudEvent) -> tuple[CloudEvent, EvidenceDataV2]:
    """Evidence ``event`` (any version, as :func:`evidence_event` gives it) read as the latest.

    Raises:
        DecodeError: its data is not valid evidence of its version.
        UnexpectedEventTypeError: it is not evidence.
    """
    latest, data = schemas.upcast(event, schemas.typed_data(event))
    if not isinstance(data, EvidenceDataV2):
        raise UnexpectedEventTypeError(event.type, EVIDENCE_RECORDED_V2)
    return latest, data


def evidence_ref(
    event: CloudEvent, stream: str, sequence: int, headers: Mapping[str, str]
) -> EvidenceRef:
    """What an assessment records of the evidence it follows (a DLQ re-send included)."""
    replay_of = headers.get(REPLAY_HEADER)
    # from a validated event and a stored message's place: nothing to validate again
    return trusted(
        EvidenceRef,
        {
            "id": event.id,
            "source": event.source,
            "stream": stream,
            "sequence": sequence,
            "replay_of": int(replay_of) if replay_of and replay_of.isdigit() else None,
        },
    )


def assessment_event(  # noqa: PLR0913 - the facts an assessment event is made of
    projection: str,
    evidence: CloudEvent,
    ref: EvidenceRef,
    assessment: Assessment,
    state: EntityRiskState,
    *,
    entity: tuple[str, str],
    cursor: int,
    time: datetime,
    type_: str = ASSESSED,
) -> tuple[CloudEvent, RiskAssessedData]:
    """The event the projection writes for ``evidence`` of ``entity`` (tenant, entity), and data.

    Every value must be known valid: the analyzer's models, the validated
    evidence envelope's tokens, its reference, the tokens of the subject it
    was stored on, a cursor >= 1 and an aware time. They are not validated
    again (a test pins equality with validated ones). The id is the
    evidence's place in the log, so it is deterministic. ``type_``: a shadow
    run's assessments have a type of their own, with the same data.
    """
    data = trusted(
        RiskAssessedData,
        {
            "projection": projection,
            "evidence": ref,
            "assessment": assessment,
            "state": state,
            "cursor": cursor,
        },
    )
    envelope = trusted(
        CloudEvent,
        {
            "specversion": "1.0",
            "id": f"{ref.stream}-{ref.sequence}",
            "source": projection_source(projection),
            "type": type_,
            "subject": entity[1],
            "tenant": entity[0],
            "time": time,
            "datacontenttype": "application/json",
            "dataschema": None,
            "correlationid": evidence.correlationid,
            "causationid": evidence.id,
            "data": None,
        },
    )
    return envelope, data
