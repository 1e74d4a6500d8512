"""Audit replay: re-derive every assessment from the evidence log and compare it with the record.

The replay folds each entity's evidence in stream order exactly as the risk
projection did: dead-lettered evidence changes nothing, degraded assessments
are re-derived with the conservative scoring, and an assessment that used an
enrichment signal is re-derived with the recorded signal (the enricher is
never called). It only reads: ephemeral consumers without acknowledgements,
nothing published, no durable state touched.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import structlog

from analyzers import ANALYZER_VERSION, AnalyzerConfig, AnalyzerError, EntityRiskState
from projections.audit._derive import (
    UNASSESSABLE,
    ByteVerifier,
    Scorings,
    compare,
    derive,
    evidence_of,
)
from projections.audit._parallel import (
    Child,
    Inbox,
    Partition,
    auto_jobs,
    fork_child,
    handing_over,
    partition,
)
from projections.audit._records import (
    AssessmentJoin,
    DeadLetterRef,
    EntityKey,
    RecordedAssessment,
    StoredAssessment,
    ack_floor,
    closing,
    dead_letters,
    entity_key,
)
from projections.audit._report import Finding, FindingKind, LevelChanges, ReplayReport
from projections.audit._reviews import RecordedDecision, impossible_review, recorded_decisions
from projections.audit._scope import ReplayScope
from projections.learning import CONFIGS_STREAM, ConfigBook, read_config_book

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from analyzers import Assessment, Evidence
    from eventstore import EventStore, RawMessage, RecordedEvent
    from projections.audit._derive import LiveScoring
    from projections.audit._diff import FieldDifference
    from projections.risk import EvidenceRef

    _Batches = AsyncIterator[list[RawMessage]]

__all__ = ["replay"]

_log = structlog.get_logger(__name__)

# per evidence position in range: what became of it, to explain stray assessments
_NONE, _ASSESSED, _DEAD, _OPEN = 0, 1, 2, 3
# why an assessment is extra, by what became of its evidence; _OTHER: another entity's
_OTHER = 4
_WHY = {
    _NONE: "there is no evidence {seq} in this scope",
    _ASSESSED: "a second assessment of evidence {seq}",
    _DEAD: "evidence {seq} was dead-lettered, yet assessed too",
    _OPEN: "evidence {seq} had no assessment when replayed",
    _OTHER: "stored on another entity's subject than evidence {seq}",
}


async def replay(  # noqa: PLR0913 - every option is keyword-only and defaulted
    store: EventStore,
    *,
    scope: ReplayScope | None = None,
    config: AnalyzerConfig | None = None,
    what_if: bool = False,
    projection: str = "risk",
    strict: bool = False,
    max_findings: int = 1000,
    progress: Callable[[int, int], None] | None = None,
    jobs: int | None = 1,
) -> ReplayReport:
    """Re-derive the assessments of ``scope`` and compare them with the recorded ones.

    ``config`` is the analyzer config to replay with (default: ``AnalyzerConfig()``).
    An assessment is re-derived with the analyzer version that recorded it,
    if it is one this build re-derives (``REDERIVABLE_VERSIONS``; with
    ``strict`` only the current one). Verifying (``what_if=False``), one scored
    by any other version is a version mismatch, and one scored with another
    config by a known version is a config mismatch: both fail the replay, and
    the entity goes on from the state this build derives, so assessments built
    on a state it cannot confirm differ too. With ``what_if``, assessments of a
    known version and another config are re-scored with ``config`` and the
    report counts how levels would have changed. ``progress(done, total)`` is
    called now and then with evidence positions.

    With ``jobs`` above 1 (``None``: as many as suit the scope and the
    machine, see :func:`auto_jobs`), the scope's entities are split into that many
    groups, each replayed by a forked process on a connection of its own (see
    :func:`entity_groups` for when a scope stays in one process); the report
    is the same as one process gives.

    Raises:
        NotProvisionedError: the streams do not exist.
        TransientStoreError: the server stopped answering.
    """
    run = _Replay(
        store,
        config or AnalyzerConfig(),
        projection=projection,
        what_if=what_if,
        strict=strict,
        max_findings=max_findings,
        progress=progress,
    )
    return await run.run(scope or ReplayScope(), jobs)


@dataclass(slots=True)
class _Chains:
    """One entity's states: as verified, and (in a what-if) as the other config folds them."""

    verified: EntityRiskState
    what_if: EntityRiskState


@dataclass(frozen=True, slots=True)
class _Part:
    """What the replay of one part of the entities found, for the parent to merge."""

    report: ReplayReport
    effects: bytearray
    leftovers: list[RecordedAssessment]


@dataclass(frozen=True, slots=True)
class _Bounds:
    floor: int
    risk_last: int
    evidence_last: int


class _Replay:
    def __init__(  # noqa: PLR0913 - the options of replay(), passed through
        self,
        store: EventStore,
        config: AnalyzerConfig,
        *,
        projection: str,
        what_if: bool,
        strict: bool,
        max_findings: int,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        self.store, self.config, self.projection = store, config, projection
        self.fingerprint = config.fingerprint()
        self.scorings = Scorings.of(config, strict=strict)
        self.verifier = ByteVerifier(store, self.scorings, projection)
        self.what_if, self.strict, self.max_findings = what_if, strict, max_findings
        self.book = ConfigBook()
        self.progress = progress
        self.chains: dict[EntityKey, _Chains] = {}
        self.letters: dict[int, DeadLetterRef] = {}
        self.decisions: dict[int, RecordedDecision] = {}
        """The review stream's decisions: what recorded review signals must name."""
        self.effects = bytearray()
        self.report: ReplayReport
        self.join: AssessmentJoin
        self.scope = ReplayScope()
        self.floor = 0

    async def run(self, scope: ReplayScope, jobs: int | None) -> ReplayReport:
        started = time.perf_counter()
        await self._read_promotions()
        bounds = await self._bounds()
        until = min(scope.until_seq or bounds.evidence_last, bounds.evidence_last)
        self.scope = replace(scope, until_seq=until) if until >= scope.from_seq else scope
        self.floor = bounds.floor
        self.report = ReplayReport(
            mode="what-if" if self.what_if else "verify",
            scope=self.scope,
            projection=self.projection,
            analyzer_version=ANALYZER_VERSION,
            config_fingerprint=self.fingerprint,
            strict=self.strict,
            level_changes=LevelChanges() if self.what_if else None,
        )
        if until >= scope.from_seq:
            self.letters = await dead_letters(self.store, self.projection, scope)
            self.decisions = await recorded_decisions(self.store)
            self.effects = bytearray(until - scope.from_seq + 1)
            open_ended = scope.until_seq is None
            jobs = auto_jobs(len(self.effects)) if jobs is None else jobs
            split = await partition(self.store, self.scope, jobs)
            if split is None:
                leftovers = await self._replay(*self._reads(bounds), bounds, open_ended=open_ended)
            else:
                leftovers = await self._in_parts(split, bounds, open_ended=open_ended)
            await self._strays(leftovers)
        self.report.settle(self.max_findings)
        self.report.elapsed_seconds = time.perf_counter() - started
        return self.report

    async def _read_promotions(self) -> None:
        """The config log's promotions: the config live at each evidence position."""
        configs = self.store.config.stream_for(CONFIGS_STREAM.category)
        if await self.store.client.stream_info(configs) is None:
            return  # a store from before the config log: nothing was ever promoted
        self.book = await read_config_book(self.store)
        if self.book.promotions:
            self.scorings = Scorings.of(self.config, strict=self.strict, book=self.book)
            self.verifier = ByteVerifier(self.store, self.scorings, self.projection)

    async def _bounds(self) -> _Bounds:
        # The ack floor first: everything at or below it has its effect in the
        # risk stream as read next. The risk stream before the evidence stream:
        # every assessment read then refers to evidence that exists.
        floor = await ack_floor(self.store, self.projection)
        config = self.store.config
        risk = await self.store.stream_state(config.stream_for("risk"))
        evidence = await self.store.stream_state(config.stream_for("evidence"))
        return _Bounds(floor, int(risk["last_seq"]), int(evidence["last_seq"]))

    def _reads(self, bounds: _Bounds) -> tuple[_Batches, _Batches]:
        """Reading the scope's evidence, and the risk stream as it was when the replay began."""
        config, scope = self.store.config, self.scope
        evidence = self.store.read_batches(
            from_seq=scope.from_seq,
            until_seq=scope.until_seq,
            filter_subject=scope.subject_filter(config, "evidence"),
        )
        risk = self.store.read_batches(
            stream=config.stream_for("risk"),
            until_seq=bounds.risk_last,
            filter_subject=scope.subject_filter(config, "risk"),
        )
        return evidence, risk

    async def _in_parts(
        self, split: Partition, bounds: _Bounds, *, open_ended: bool
    ) -> list[RecordedAssessment]:
        """Replay part 0 here and every other part in a forked child; merge what they found.

        A child is this replay as it stands when forked (bounds, dead letters,
        an empty report), fed the messages of its part as this process reads
        them. Entities never share state, so the parts add up to the replay
        of the whole scope.
        """

        async def replay_part(inbox: Inbox) -> _Part:
            self.progress = None  # the parent reports progress
            evidence, risk = inbox.batches("evidence"), inbox.batches("risk")
            leftovers = await self._replay(evidence, risk, bounds, open_ended=open_ended)
            return _Part(self.report, self.effects, leftovers)

        children: list[Child] = []
        try:
            try:
                for part in range(1, split.parts):
                    children.append(fork_child(part, replay_part, children))
            except OSError as exc:  # out of processes or memory: one process can still do it
                _log.warning("replay.fork_failed", error=str(exc), parts=split.parts)
                for child in children:
                    await child.stop()
                children.clear()
                return await self._replay(*self._reads(bounds), bounds, open_ended=open_ended)
            evidence, risk = self._reads(bounds)
            leftovers = await self._replay(
                handing_over(evidence, "evidence", split, children),
                handing_over(risk, "risk", split, children),
                bounds,
                open_ended=open_ended,
            )
            found_parts = [await child.result() for child in children]
        finally:
            for child in children:
                await child.stop()
        effects = int.from_bytes(self.effects, "little")
        for found in found_parts:
            assert isinstance(found, _Part)  # noqa: S101 - what replay_part returns
            self.report.absorb(found.report)
            effects |= int.from_bytes(found.effects, "little")  # each marks its own evidence
            leftovers.extend(found.leftovers)
        self.effects = bytearray(effects.to_bytes(len(self.effects), "little"))
        self.report.jobs = split.parts
        return sorted(leftovers, key=lambda stray: stray.sequence)

    async def _replay(
        self, evidence: _Batches, risk: _Batches, bounds: _Bounds, *, open_ended: bool
    ) -> list[RecordedAssessment]:
        """Replay the evidence read (the scope's, or a part's); the assessments no evidence took."""
        first, last = self.scope.from_seq, self.scope.until_seq or bounds.evidence_last
        if self.progress is not None:
            self.progress(0, last - first + 1)
        async with closing(risk) as risk_batches, closing(evidence) as evidence_batches:
            self.join = AssessmentJoin(
                self.store, risk_batches, from_seq=first, until_seq=last, keep_beyond=open_ended
            )
            async for batch in evidence_batches:
                for raw in batch:
                    await self._evidence(raw)
                if self.progress is not None:
                    self.progress(batch[-1].seq - first + 1, last - first + 1)
            leftovers = await self.join.leftovers()
        for stray in self.join.beyond:
            seq = stray.data.evidence.sequence
            self._extra(stray, f"there is no evidence {seq}: the evidence stream ends at {last}")
        for bad in self.join.unreadable:
            key = entity_key(bad.subject)
            detail = f"risk seq {bad.sequence} is not a valid assessment: {bad.error}"
            self._find("unreadable", key, detail, at=bad.sequence)
        if self.progress is not None:
            self.progress(last - first + 1, last - first + 1)
        return leftovers

    # -- one evidence event ---------------------------------------------------------------

    async def _evidence(self, raw: RawMessage) -> None:
        key, seq = entity_key(raw.subject), raw.seq
        self.report.totals.evidence += 1
        self.report.entity(key).counts.evidence += 1
        letter = self.letters.get(seq)
        stored = await self.join.take(seq, key, wait=letter is None)
        if letter is None and self._identical(raw, key, stored):
            return
        own = self.join.resolve(stored)
        if letter is not None:
            self._mark(seq, _DEAD)
            self._count(key, "dead_lettered")
            for stray in own:
                self._extra(stray, _WHY[_DEAD].format(seq=seq))
            return
        if not own:
            self._unassessed(key, seq)
            return
        self._mark(seq, _ASSESSED)
        self._check(self.store.recorded(raw), key, own[0])
        for stray in own[1:]:
            self._extra(stray, _WHY[_ASSESSED].format(seq=seq))

    def _identical(
        self, raw: RawMessage, key: EntityKey, stored: list[RecordedAssessment | StoredAssessment]
    ) -> bool:
        """Settle the common case by comparing bytes: the one assessment, identical.

        False when that does not settle it (nothing is counted then): the
        caller validates the assessments and compares them field by field.
        """
        if self.what_if or len(stored) != 1:
            return False
        candidate = stored[0]
        if not isinstance(candidate, StoredAssessment) or candidate.key != key:
            return False
        chains = self._chains(key)
        state = self.verifier.verified(chains.verified, raw, candidate)
        if state is None:
            return False
        chains.verified = state
        self.effects[raw.seq - self.scope.from_seq] = _ASSESSED
        totals, counts = self.report.totals, self.report.entity(key).counts
        totals.checked, totals.identical = totals.checked + 1, totals.identical + 1
        counts.checked, counts.identical = counts.checked + 1, counts.identical + 1
        return True

    def _unassessed(self, key: EntityKey, seq: int) -> None:
        self._mark(seq, _OPEN)
        if seq > self.floor:
            self._count(key, "pending")
            return
        detail = f"evidence {seq} has neither an assessment nor a dead letter"
        self._find("missing", key, detail, evidence=seq)

    def _check(self, rec: RecordedEvent, key: EntityKey, recorded: RecordedAssessment) -> None:
        try:
            evidence, ref = evidence_of(self.store.schemas, rec)
        except UNASSESSABLE as exc:
            why = f"evidence {rec.sequence} cannot be assessed ({exc}): it should be a dead letter"
            self._extra(recorded, why)
            return
        self._count(key, "checked")
        chains = self._chains(key)
        before = chains.verified
        verified: tuple[Assessment, EntityRiskState] | None = None
        scored = recorded.data.assessment
        config = self.scorings.config_for(
            scored.analyzer_version, scored.config_fingerprint, rec.sequence
        )
        if config is not None:
            verified = self._verify(key, recorded, evidence, ref, chains, config=config)
        elif self.what_if and scored.analyzer_version in self.scorings.by_version:
            self._count(key, "rescored")
            chains.verified = recorded.data.state
        else:
            self._mismatch(key, recorded, evidence, ref, chains)
        if self.what_if:
            reuse = verified if chains.what_if is before and config is self.config else None
            self._what_if(key, recorded, evidence, chains, reuse)

    # -- verification ------------------------------------------------------------------------

    def _verify(  # noqa: PLR0913 - one assessment, where it stands, and the config that scored it
        self,
        key: EntityKey,
        recorded: RecordedAssessment,
        evidence: Evidence,
        ref: EvidenceRef,
        chains: _Chains,
        *,
        config: AnalyzerConfig,
    ) -> tuple[Assessment, EntityRiskState] | None:
        seq = evidence.sequence
        try:
            derived = derive(config, chains.verified, evidence, recorded.data.assessment)
        except AnalyzerError as exc:
            chains.verified = recorded.data.state
            self._find(
                "differs", key, f"re-deriving failed: {exc}", evidence=seq, at=recorded.sequence
            )
            return None
        chains.verified = derived[1]
        impossible = self.scorings.impossible(
            recorded.data.assessment, config, seq
        ) or impossible_review(
            recorded.data.assessment.review, key, recorded.stored_at, self.decisions
        )
        if impossible is not None:
            self._find("differs", key, impossible, evidence=seq, at=recorded.sequence)
            return derived
        difference = compare(recorded.data, (self.projection, ref, *derived))
        if difference is None:
            self._count(key, "identical")
        else:
            detail = f"re-derived assessment differs: {difference.describe()}"
            self._find(
                "differs", key, detail, evidence=seq, at=recorded.sequence, difference=difference
            )
        return derived

    def _mismatch(
        self,
        key: EntityKey,
        recorded: RecordedAssessment,
        evidence: Evidence,
        ref: EvidenceRef,
        chains: _Chains,
    ) -> None:
        """An assessment this build cannot re-derive as recorded: say why, and what it derives.

        The entity goes on from the state this build derives (the recorded one
        only if the analyzer refuses the evidence): a state nobody can confirm
        must not vouch for the assessments built on it.
        """
        scored = recorded.data.assessment
        seq, at = evidence.sequence, recorded.sequence
        version = scored.analyzer_version
        kind: FindingKind
        live = self.scorings.live_at(seq)
        config = self.scorings.by_version.get(version)
        if live is not None:
            kind, detail = "config_mismatch", self._not_live(live, scored)
            config = live.config or self.config
        elif config is None:
            kind, config = "version_mismatch", self.config
            detail = (
                f"scored by analyzer {version}, which this build ({ANALYZER_VERSION}) cannot"
                f" re-derive (it re-derives {', '.join(self.scorings.by_version)})"
            )
        else:
            kind = "config_mismatch"
            detail = (
                f"scored with config {scored.config_fingerprint[:12]}, replayed with"
                f" {config.fingerprint()[:12]}, same analyzer {version}: the config changed"
                " without a version bump"
            )
        difference, state = None, recorded.data.state
        # the mismatch is the finding; a failed re-derivation adds nothing to it
        with contextlib.suppress(AnalyzerError):
            assessment, state = derive(config, chains.verified, evidence, scored)
            stamped = assessment.model_copy(
                update={
                    "analyzer_version": version,
                    "config_fingerprint": scored.config_fingerprint,
                }
            )  # the stamps are the mismatch itself: look for what else differs
            difference = compare(recorded.data, (self.projection, ref, stamped, state))
        if difference is not None:
            detail += f"; as {config.analyzer_version} derives it, {difference.describe()}"
        self._find(kind, key, detail, evidence=seq, at=at, difference=difference)
        chains.verified = state

    def _not_live(self, live: LiveScoring, scored: Assessment) -> str:
        """What a finding says of an assessment not scored with the config promoted for it."""
        recorded = scored.config_fingerprint
        named = self.scorings.version_named(recorded)
        detail = (
            f"expected config version {live.version} ({live.fingerprint[:12]}), live from"
            f" evidence {live.effective_from}; recorded config {recorded[:12]}"
            + (f" (version {named})" if named else "")
            + f", analyzer {scored.analyzer_version}"
        )
        if live.config is None:
            detail += f"; this build cannot re-derive with {live.version}: {live.problem}"
        return detail

    # -- what-if ----------------------------------------------------------------------------

    def _what_if(
        self,
        key: EntityKey,
        recorded: RecordedAssessment,
        evidence: Evidence,
        chains: _Chains,
        reuse: tuple[Assessment, EntityRiskState] | None,
    ) -> None:
        try:
            assessment, state = reuse or derive(
                self.config, chains.what_if, evidence, recorded.data.assessment
            )
        except AnalyzerError:
            return  # already reported by the verification, or unverifiable anyway
        chains.what_if = state
        assert self.report.level_changes is not None  # noqa: S101 - set for every what-if
        self.report.level_changes.add(
            key, recorded.data.assessment.level.value, assessment.level.value
        )

    def _chains(self, key: EntityKey) -> _Chains:
        chains = self.chains.get(key)
        if chains is None:
            seed = self.join.seeds.get(key)
            state = seed.data.state if seed is not None else EntityRiskState.initial()
            chains = self.chains[key] = _Chains(state, state)
        return chains

    # -- strays, findings and counts ---------------------------------------------------------

    async def _strays(self, leftovers: list[RecordedAssessment]) -> None:
        """Assessments of evidence in range that no evidence took, each with why it is extra."""
        first = self.scope.from_seq
        owners: dict[int, EntityKey | None] = {}
        for stray in leftovers:
            seq = stray.data.evidence.sequence
            effect = self.effects[seq - first]
            if effect != _NONE:
                if seq not in owners:
                    owners[seq] = await self._owner(seq)
                if owners[seq] != stray.key:
                    effect = _OTHER
            self._extra(stray, _WHY[effect].format(seq=seq))

    async def _owner(self, seq: int) -> EntityKey | None:
        """The entity of evidence ``seq``: one direct get, for an assessment no evidence took."""
        rec = await self.store.get(self.store.config.stream_for("evidence"), seq)
        return None if rec is None else entity_key(rec.subject)

    def _extra(self, stray: RecordedAssessment, why: str) -> None:
        seq = stray.data.evidence.sequence
        detail = f"unexpected assessment: {why}"
        self._find("extra", stray.key, detail, evidence=seq, at=stray.sequence)

    def _find(  # noqa: PLR0913 - a finding's fields, keyword-only
        self,
        kind: FindingKind,
        key: EntityKey,
        detail: str,
        *,
        evidence: int | None = None,
        at: int | None = None,
        difference: FieldDifference | None = None,
    ) -> None:
        """Record a finding about entity ``key``: evidence sequence, risk sequence ``at``."""
        self.report.add(Finding(kind, *key, evidence, at, detail, difference), self.max_findings)

    def _count(self, key: EntityKey, *names: str) -> None:
        totals, entity = self.report.totals, self.report.entity(key).counts
        for name in names:
            setattr(totals, name, getattr(totals, name) + 1)
            setattr(entity, name, getattr(entity, name) + 1)

    def _mark(self, seq: int, effect: int) -> None:
        self.effects[seq - self.scope.from_seq] = effect
