"""The analyzer configs of the log: which versions were proposed, which is live from where.

The ``CONFIGS`` stream holds one subject (:data:`CONFIG_SUBJECT`), so its last
sequence is the book's version: every proposal and promotion is appended
fenced on it, and of two operators acting on the same version one gets a
:class:`ConfigConflictError`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from analyzers import AnalyzerConfig
from eventstore import NO_STREAM, CloudEvent
from eventstore.errors import ConcurrencyConflictError
from projections.learning._events import (
    CONFIG_PROMOTED,
    CONFIG_PROMOTION_STARTED,
    CONFIG_PROPOSED,
    CONFIG_SUBJECT,
    CONFIGS_STREAM,
    ConfigPromotedData,
    ConfigPromotionStartedData,
    ConfigProposedData,
    TrainingWindow,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from eventstore import EventStore, RecordedEvent
    from projections.review import Actor

__all__ = [
    "ConfigBook",
    "ConfigBookError",
    "ConfigConflictError",
    "ConfigVersionExistsError",
    "Promotion",
    "Proposal",
    "UnknownConfigVersionError",
    "promote",
    "propose",
    "read_config_book",
]

_SOURCE = "urn:riskpipe:configs"


class ConfigBookError(Exception):
    """A proposal or promotion the book refuses; nothing was appended."""


class ConfigVersionExistsError(ConfigBookError):
    """A version name is taken: versions are never redefined."""

    def __init__(self, version: str) -> None:
        super().__init__(f"config version {version!r} was proposed already: pick another name")
        self.version = version


class UnknownConfigVersionError(ConfigBookError):
    """No proposal of that version is in the log."""

    def __init__(self, version: str, known: list[str]) -> None:
        listed = ", ".join(known[-10:]) if known else "none yet"
        super().__init__(f"no config version {version!r} was proposed (known: {listed})")
        self.version = version


class ConfigConflictError(ConfigBookError):
    """Someone else appended a config event since the book was read: read it again."""

    def __init__(self, expected: int, actual: int | None) -> None:
        super().__init__(
            f"the config log moved on (expected version {expected}, found {actual}):"
            " someone else proposed or promoted at the same time; look again and retry"
        )
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True, slots=True)
class Proposal:
    """One proposed config version, as its event recorded it."""

    data: ConfigProposedData
    sequence: int
    time: datetime

    @property
    def version(self) -> str:
        """The version's name."""
        return self.data.version

    def config(self) -> AnalyzerConfig:
        """The config itself, validated (it must be for this build's analyzer version).

        Raises:
            pydantic.ValidationError: it is not a valid config for this analyzer.
        """
        return AnalyzerConfig.model_validate(self.data.config)


@dataclass(frozen=True, slots=True)
class Promotion:
    """One promotion (or rollback): from ``effective_from`` on, ``version`` scores."""

    data: ConfigPromotedData
    sequence: int
    time: datetime

    @property
    def version(self) -> str:
        """The promoted version's name."""
        return self.data.version

    @property
    def effective_from(self) -> int:
        """The first evidence stream sequence this promotion scores."""
        return self.data.effective_from


@dataclass(slots=True)
class ConfigBook:
    """Every proposal and promotion in the log, in order, and the subject's last sequence."""

    proposals: dict[str, Proposal] = field(default_factory=dict)
    promotions: list[Promotion] = field(default_factory=list)
    version: int = 0
    """The config subject's last sequence: what the next append is fenced on (0: none)."""
    skipped: list[int] = field(default_factory=list)
    """Sequences of messages that are not config events (counted for the version only)."""
    pending: ConfigPromotionStartedData | None = None
    """A promotion started and not recorded yet: evidence must wait for it (or ``None``)."""

    def apply_recorded(self, rec: RecordedEvent) -> None:
        """Fold one stored message of the config subject in."""
        self.version = max(self.version, rec.sequence)
        event = rec.event
        if event is None or event.data is None:
            self.skipped.append(rec.sequence)
            return
        if event.type == CONFIG_PROPOSED:
            proposal = ConfigProposedData.model_validate(event.data)
            self.proposals.setdefault(
                proposal.version, Proposal(proposal, rec.sequence, event.time)
            )
        elif event.type == CONFIG_PROMOTED:
            promoted = ConfigPromotedData.model_validate(event.data)
            self.promotions.append(Promotion(promoted, rec.sequence, event.time))
            self.pending = None
        elif event.type == CONFIG_PROMOTION_STARTED:
            self.pending = ConfigPromotionStartedData.model_validate(event.data)
        else:
            self.skipped.append(rec.sequence)

    @property
    def live(self) -> Promotion | None:
        """The latest promotion, if any: what scores evidence from now on."""
        return self.promotions[-1] if self.promotions else None

    def live_at(self, evidence_sequence: int) -> Promotion | None:
        """The promotion in effect for the evidence at ``evidence_sequence`` (``None``: before any).

        Promotions are appended in order and each takes effect at or after the
        one before, so the last one whose ``effective_from`` is reached wins.
        """
        found: Promotion | None = None
        for promotion in self.promotions:
            if promotion.effective_from <= evidence_sequence:
                found = promotion
        return found

    def proposal(self, version: str) -> Proposal:
        """The proposal of ``version``.

        Raises:
            UnknownConfigVersionError: it was never proposed.
        """
        if (found := self.proposals.get(version)) is None:
            raise UnknownConfigVersionError(version, list(self.proposals))
        return found


async def read_config_book(store: EventStore) -> ConfigBook:
    """The config log as it stands: one direct get per config event (a few dozen, usually)."""
    book = ConfigBook()
    stream = store.config.stream_for(CONFIGS_STREAM.category)
    subject = store.config.subject(CONFIGS_STREAM.category, *CONFIG_SUBJECT)
    sequence = 1
    while (rec := await store.get(stream, sequence, next_on_subject=subject)) is not None:
        sequence = rec.sequence + 1
        book.apply_recorded(rec)
    return book


async def _append(
    store: EventStore,
    book: ConfigBook,
    type_: str,
    data: ConfigProposedData | ConfigPromotedData | ConfigPromotionStartedData,
    clock: Callable[[], datetime],
) -> RecordedEvent:
    tenant, entity = CONFIG_SUBJECT
    event = CloudEvent(
        id=uuid.uuid4().hex, source=_SOURCE, type=type_, subject=entity, tenant=tenant, time=clock()
    )
    try:
        stored = await store.append(event, expected_version=book.version or NO_STREAM, data=data)
    except ConcurrencyConflictError as exc:
        raise ConfigConflictError(book.version, exc.actual) from exc
    rec = await store.get(stored.stream, stored.sequence)
    assert rec is not None  # noqa: S101 - it was just stored
    book.apply_recorded(rec)
    return rec


async def propose(  # noqa: PLR0913 - the proposal's fields, keyword-only
    store: EventStore,
    book: ConfigBook,
    config: AnalyzerConfig,
    *,
    version: str,
    by: Actor,
    clock: Callable[[], datetime],
    training: TrainingWindow | None = None,
    metrics: dict[str, Any] | None = None,
    reason: str | None = None,
) -> Proposal:
    """Record ``config`` as proposed version ``version`` (fenced on ``book``, which it updates).

    Raises:
        ConfigVersionExistsError: ``version`` was proposed already.
        ConfigConflictError: the log moved on since ``book`` was read.
    """
    if version in book.proposals:
        raise ConfigVersionExistsError(version)
    data = ConfigProposedData(
        version=version,
        analyzer_version=config.analyzer_version,
        fingerprint=config.fingerprint(),
        config=config.model_dump(mode="json"),
        training=training,
        metrics=metrics or {},
        reason=reason,
        by=by,
    )
    await _append(store, book, CONFIG_PROPOSED, data, clock)
    return book.proposals[version]


async def promote(  # noqa: PLR0913 - the promotion's fields, keyword-only
    store: EventStore,
    book: ConfigBook,
    version: str,
    *,
    by: Actor,
    reason: str,
    clock: Callable[[], datetime],
    kind: Literal["promotion", "rollback"] = "promotion",
) -> Promotion:
    """Make ``version`` live from the next evidence on (fenced on ``book``, which it updates).

    Two events, each fenced on the one before: ``promotion_started``, then,
    after reading the evidence stream's last sequence from its leader,
    ``promoted`` with ``effective_from`` one past it. A worker checks the
    book after fetching each batch: if it saw no ``promotion_started``, the
    promotion read the evidence stream after the worker's evidence was
    stored, so that evidence is before ``effective_from``; if it saw one
    without its ``promoted``, it holds the batch until it can tell. So every
    worker scores every evidence with the config the log says, however the
    promotion and the evidence interleave.

    Raises:
        UnknownConfigVersionError: ``version`` was never proposed.
        ConfigConflictError: the log moved on since ``book`` was read.
    """
    proposal = book.proposal(version)
    started = ConfigPromotionStartedData(version=version, kind=kind, by=by)
    await _append(store, book, CONFIG_PROMOTION_STARTED, started, clock)
    evidence = store.config.stream_for("evidence")
    info = await store.client.stream_info(evidence)  # the stream leader answers
    last = int(info["state"]["last_seq"]) if info is not None else 0
    data = ConfigPromotedData(
        version=version,
        fingerprint=proposal.data.fingerprint,
        previous=book.live.version if book.live is not None else None,
        effective_from=last + 1,
        kind=kind,
        reason=reason,
        metrics=proposal.data.metrics,
        by=by,
    )
    await _append(store, book, CONFIG_PROMOTED, data, clock)
    return book.promotions[-1]
