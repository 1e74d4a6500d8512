"""The config log: proposals are never redefined, promotions are fenced and take effect in order."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from analyzers import AnalyzerConfig, SeverityWeights
from eventstore import CloudEvent
from projections.learning import (
    ConfigConflictError,
    ConfigVersionExistsError,
    UnknownConfigVersionError,
    promote,
    propose,
    read_config_book,
)
from projections.review import Actor

if TYPE_CHECKING:
    from eventstore import EventStore

NOW = datetime(2026, 12, 1, tzinfo=UTC)
OPS = Actor(name="olga", role="operator")
TUNED = AnalyzerConfig(severity_weights=SeverityWeights(low=0.05, medium=0.2, high=0.7, critical=1))


def _clock() -> datetime:
    return NOW


async def _evidence(store: EventStore, first: int, count: int) -> None:
    for n in range(first, first + count):
        data = {"pattern": "failed_login", "severity": "low"}
        event = CloudEvent(
            id=f"e{n}", source="urn:test", type="riskpipe.evidence.recorded.v1",
            subject="u1", tenant="acme", time=NOW, data=data,
        )  # fmt: skip
        await store.append(event)


async def test_a_proposal_is_read_back_whole_and_a_version_is_never_redefined(
    store: EventStore,
) -> None:
    """The proposed config comes back with its fingerprint; the same name again is refused."""
    book = await read_config_book(store)
    await propose(store, book, TUNED, version="tuned-1", by=OPS, clock=_clock, reason="hand-tuned")
    again = await read_config_book(store)
    proposal = again.proposal("tuned-1")
    assert proposal.config() == TUNED
    assert proposal.data.fingerprint == TUNED.fingerprint()
    assert again.version == book.version == 1
    with pytest.raises(ConfigVersionExistsError, match="tuned-1"):
        await propose(store, again, AnalyzerConfig(), version="tuned-1", by=OPS, clock=_clock)
    with pytest.raises(UnknownConfigVersionError, match="known: tuned-1"):
        again.proposal("tuned-2")


async def test_a_promotion_takes_effect_after_the_evidence_already_stored(
    store: EventStore,
) -> None:
    """``effective_from`` is one past the last evidence; ``live_at`` picks the one in force."""
    book = await read_config_book(store)
    assert book.live is None
    await propose(store, book, TUNED, version="tuned-1", by=OPS, clock=_clock)
    await propose(store, book, AnalyzerConfig(), version="default-1", by=OPS, clock=_clock)
    await _evidence(store, 0, 3)
    first = await promote(store, book, "tuned-1", by=OPS, reason="better recall", clock=_clock)
    assert first.effective_from == 4
    assert first.data.previous is None
    await _evidence(store, 3, 2)
    back = await promote(
        store, book, "default-1", by=OPS, reason="too many alerts", clock=_clock, kind="rollback"
    )
    assert (back.effective_from, back.data.previous, back.data.kind) == (6, "tuned-1", "rollback")
    read = await read_config_book(store)
    assert [p.version for p in read.promotions] == ["tuned-1", "default-1"]
    assert read.live_at(3) is None
    assert [read.live_at(s).version for s in (4, 5, 6, 99)] == [  # type: ignore[union-attr]
        "tuned-1", "tuned-1", "default-1", "default-1",
    ]  # fmt: skip


async def test_two_promotions_on_the_same_book_one_wins(store: EventStore) -> None:
    """Both read the same version of the log; exactly one promotion is stored."""
    book = await read_config_book(store)
    await propose(store, book, TUNED, version="tuned-1", by=OPS, clock=_clock)
    mine, theirs = await read_config_book(store), await read_config_book(store)
    results = await asyncio.gather(
        promote(store, mine, "tuned-1", by=OPS, reason="a", clock=_clock),
        promote(store, theirs, "tuned-1", by=OPS, reason="b", clock=_clock),
        return_exceptions=True,
    )
    assert sum(isinstance(r, ConfigConflictError) for r in results) == 1
    assert len((await read_config_book(store)).promotions) == 1


async def test_promoting_a_version_nobody_proposed_writes_nothing(store: EventStore) -> None:
    """The error names the version; the log is unchanged."""
    book = await read_config_book(store)
    with pytest.raises(UnknownConfigVersionError, match=r"'nope'.*none yet"):
        await promote(store, book, "nope", by=OPS, reason="x", clock=_clock)
    assert (await read_config_book(store)).version == 0
