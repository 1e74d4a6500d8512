"""The labelled set ``riskpipe learn`` fits on, built from the log alone.

Every evidence event is folded, in stream order and per entity, with the
analyzer's own :func:`fold` (every weight 1, one key per pattern and
severity), so an example holds the features the analyzer would score under
any pattern and severity weights: the decayed mass of each pattern at each
severity, the critical severity mass and the diversity term. Labels
come from outcomes later: :meth:`Dataset.labels` says, for each example, whether
a positive outcome of its entity was observed within the horizon after it,
counting only outcomes observed up to a given time (the cut, for training).
"""

from __future__ import annotations

import copy
from array import array
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import sparse

from analyzers import (
    EVIDENCE_RECORDED_V2,
    AnalyzerConfig,
    EntityRiskState,
    Evidence,
    EvidenceData,
    EvidenceDataV2,
    Severity,
    SeverityWeights,
    trusted,
)
from analyzers._window import fold
from eventstore.errors import EventStoreError
from projections.errors import UnexpectedEventTypeError
from projections.learning._errors import EmptyWindowError, NoEvidenceError, check_horizon
from projections.learning._events import OUTCOME_RECORDED, OUTCOMES_STREAM, OutcomeRecordedData
from projections.review import DECIDED, REVIEW_STREAM, CaseDecidedData

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from datetime import datetime

    from numpy.typing import NDArray

    from eventstore import EventStore, RecordedEvent

__all__ = ["SEVERITIES", "Dataset", "build_dataset", "dataset_from_evidence", "severity_array"]

EntityKey = tuple[str, str]
SEVERITIES: tuple[Severity, ...] = (
    Severity.LOW,
    Severity.MEDIUM,
    Severity.HIGH,
    Severity.CRITICAL,
)
"""The severities in weight order (a config's weights never decrease along it)."""
_PAIR = "\x1f"
"""Joins a pattern and a severity into one fold key (no pattern name holds it)."""
_MS = 1000.0
_SHOWN_UNKNOWN = 5


@dataclass(frozen=True, slots=True)
class Dataset:
    """Examples (one per evidence observed in the window) and every outcome of their entities.

    ``pair_masses`` is a CSR matrix, one row per example and one column per
    ``(pattern, severity)`` of :attr:`pairs`: the decayed confidence of that
    pattern's evidence of that severity, every weight 1. ``masses`` holds the
    pattern masses under the base config's severity weights (pattern weight 1);
    :meth:`pattern_masses` gives them under any severity weights.
    Times are seconds since the epoch. Outcomes are kept separately, so
    the labels of any cut and horizon are computed without reading again.
    """

    patterns: tuple[str, ...]
    pairs: tuple[tuple[str, Severity], ...]
    times: NDArray[np.float64]
    entity: NDArray[np.int64]
    pair_masses: sparse.csr_matrix
    masses: sparse.csr_matrix
    critical: NDArray[np.float64]
    """The decayed confidence of critical evidence (times the amplification gives the term)."""
    diversity: NDArray[np.float64]
    """The diversity term as the base config computes it."""
    impact: NDArray[np.float64]
    """The impact mass with unit pattern and severity weights, times the base's amplification."""
    outcome_entity: NDArray[np.int64]
    outcome_time: NDArray[np.float64]
    outcome_positive: NDArray[np.bool_]
    entities: tuple[EntityKey, ...]
    base: AnalyzerConfig
    since: datetime
    until: datetime
    evidence_read: int = 0
    undecodable: int = 0
    unknown_outcomes: int = 0
    unknown_entities: tuple[str, ...] = ()
    """Up to five ``tenant/entity`` names of outcomes whose entity has no evidence (ignored)."""

    def __len__(self) -> int:
        return int(self.times.shape[0])

    def labels(self, horizon: float, *, observed_until: float) -> NDArray[np.int8]:
        """1 where a positive outcome of the example's entity is in ``(t, t + horizon]``.

        Only outcomes observed at or before ``observed_until`` count: labels
        built for training with the cut there know nothing observed later.

        Raises:
            InvalidHorizonError: ``horizon`` is not positive and finite.
        """
        check_horizon(horizon)
        keep = self.outcome_positive & (self.outcome_time <= observed_until)
        if len(self) == 0 or not keep.any():
            return np.zeros(len(self), dtype=np.int8)
        origin = min(float(self.times.min()), float(self.outcome_time[keep].min()))
        o_ms = np.floor((self.outcome_time[keep] - origin) * _MS).astype(np.int64)
        t_ms = np.floor((self.times - origin) * _MS).astype(np.int64)
        end = np.minimum(self.times + horizon, observed_until)
        e_ms = np.floor((end - origin) * _MS).astype(np.int64)
        stride = int(max(int(o_ms.max()), int(e_ms.max()), int(t_ms.max()))) + 2
        keys = np.sort(self.outcome_entity[keep] * stride + o_ms)
        base = self.entity * stride
        after = np.searchsorted(keys, base + t_ms, side="right")
        within = np.searchsorted(keys, base + np.maximum(e_ms, t_ms), side="right")
        return (within > after).astype(np.int8)

    def raw(
        self, weights: NDArray[np.float64], critical: float, diversity_scale: float = 1.0
    ) -> NDArray[np.float64]:
        """Raw scores with pattern ``weights`` (column order), amplification ``critical``.

        ``diversity_scale`` multiplies the base diversity term; the impact
        term is the base config's, as weighted by 1 (see docs/learning.md).
        """
        raw = self.masses @ weights
        return np.asarray(
            raw + critical * self.critical + diversity_scale * self.diversity + self.impact,
            dtype=np.float64,
        )

    def pattern_masses(self, severity_weights: NDArray[np.float64]) -> sparse.csr_matrix:
        """Each example's pattern masses (pattern weight 1) under ``severity_weights``.

        ``severity_weights`` are in :data:`SEVERITIES` order.
        """
        index = {pattern: i for i, pattern in enumerate(self.patterns)}
        rows = np.arange(len(self.pairs))
        columns = np.array([index[p] for p, _ in self.pairs], dtype=np.int64)
        values = np.array([severity_weights[SEVERITIES.index(s)] for _, s in self.pairs])
        project = sparse.csr_matrix(
            (values.astype(np.float64), (rows, columns)),
            shape=(len(self.pairs), len(self.patterns)),
        )
        return sparse.csr_matrix(self.pair_masses @ project)

    def severity_masses(self, pattern_weights: NDArray[np.float64]) -> NDArray[np.float64]:
        """Each example's mass per severity (:data:`SEVERITIES` order) under ``pattern_weights``."""
        index = {pattern: i for i, pattern in enumerate(self.patterns)}
        rows = np.arange(len(self.pairs))
        columns = np.array([SEVERITIES.index(s) for _, s in self.pairs], dtype=np.int64)
        values = np.array([pattern_weights[index[p]] for p, _ in self.pairs])
        project = sparse.csr_matrix(
            (values.astype(np.float64), (rows, columns)), shape=(len(self.pairs), len(SEVERITIES))
        )
        return np.asarray((self.pair_masses @ project).toarray(), dtype=np.float64)

    def config_raw(self, config: AnalyzerConfig) -> NDArray[np.float64]:
        """Raw scores of every example under ``config`` (same decay as the base)."""
        weights = np.array([config.pattern_weights.get(p, 1.0) for p in self.patterns])
        bonus = self.base.diversity_bonus
        ratio = config.diversity_bonus / bonus if bonus > 0.0 else 0.0
        masses = self.pattern_masses(severity_array(config.severity_weights))
        raw = masses @ weights.astype(np.float64)
        return np.asarray(
            raw
            + config.critical_amplification * self.critical
            + ratio * self.diversity
            + self.impact,
            dtype=np.float64,
        )

    def config_scores(self, config: AnalyzerConfig) -> NDArray[np.float64]:
        """The analyzer's evidence score of every example under ``config``."""
        raw = np.maximum(self.config_raw(config), 0.0)
        return np.asarray(1.0 - np.power(0.5, raw / config.saturation), dtype=np.float64)

    def base_weights(self) -> NDArray[np.float64]:
        """The base config's pattern weights in column order (1.0 where it names none)."""
        found = self.base.pattern_weights
        return np.array([found.get(p, 1.0) for p in self.patterns], dtype=np.float64)


class _Builder:
    """Folds evidence into per-entity states and records an example per evidence in window."""

    def __init__(self, base: AnalyzerConfig, since: datetime, until: datetime) -> None:
        self.base = base
        # every weight 1, and one fold key per (pattern, severity): the fit chooses both
        self.unit = base.model_copy(
            update={
                "pattern_weights": {},
                "critical_amplification": 1.0,
                "severity_weights": SeverityWeights(low=1.0, medium=1.0, high=1.0, critical=1.0),
                "max_patterns": min(1024, base.max_patterns * len(SEVERITIES)),
            }
        ).tables
        self.bonus, self.cap = base.diversity_bonus, base.diversity_cap
        self.since = since
        self.until = until
        self.states: dict[EntityKey, EntityRiskState] = {}
        self.entity_index: dict[EntityKey, int] = {}
        self.pattern_index: dict[str, int] = {}
        # typed arrays, 8 bytes an item: a million examples stay a few dozen megabytes
        self.times = array("d")
        self.entity = array("q")
        self.critical = array("d")
        self.diversity = array("d")
        self.impact = array("d")
        self.indptr = array("q", [0])
        self.columns = array("q")
        self.values = array("d")
        self.read = 0

    def add(self, key: EntityKey, evidence: Evidence, *, owned: bool = False) -> None:
        """Fold ``evidence`` into its entity's state; an example if it is in the window.

        ``owned``: no one else holds ``evidence``, and its pattern may become its fold key.
        """
        self.read += 1
        state = self.states.get(key) or EntityRiskState.initial()
        keyed = evidence if owned else copy.copy(evidence)
        object.__setattr__(keyed, "pattern", f"{evidence.pattern}{_PAIR}{evidence.severity.value}")
        fields = fold(state, keyed, self.unit)
        self.states[key] = trusted(EntityRiskState, fields)
        observed = evidence.observed_at
        if not self.since <= observed <= self.until:
            return
        masses = fields["pattern_mass"]
        distinct = len({pair.partition(_PAIR)[0] for pair in masses})
        index = self.entity_index.setdefault(key, len(self.entity_index))
        self.times.append(observed.timestamp())
        self.entity.append(index)
        self.critical.append(fields["severity_mass"].get(Severity.CRITICAL, 0.0))
        self.diversity.append(min(self.cap, self.bonus * (distinct - 1)) if distinct > 1 else 0.0)
        self.impact.append(fields["impact_mass"] or 0.0)
        for pair, mass in masses.items():
            if mass > 0.0:
                self.columns.append(self.pattern_index.setdefault(pair, len(self.pattern_index)))
                self.values.append(mass)
        self.indptr.append(len(self.columns))

    def dataset(self, outcomes: list[tuple[EntityKey, float, bool]], undecodable: int) -> Dataset:
        if not self.times:
            raise NoEvidenceError(
                f"no evidence was observed between {self.since.isoformat()} and"
                f" {self.until.isoformat()} ({self.read} evidence events read): choose a"
                " window the log covers"
            )
        order = sorted(self.pattern_index, key=self.pattern_index.__getitem__)
        keys = sorted(order)
        remap = np.array([keys.index(k) for k in order], dtype=np.int64)
        columns = remap[np.frombuffer(self.columns, dtype=np.int64)]
        pair_masses = sparse.csr_matrix(
            (
                np.array(self.values, dtype=np.float64),
                columns,
                np.array(self.indptr, dtype=np.int64),
            ),
            shape=(len(self.times), len(keys)),
        )
        pair_masses.sort_indices()
        pairs = tuple(
            (pattern, Severity(severity))
            for pattern, _, severity in (k.partition(_PAIR) for k in keys)
        )
        patterns = tuple(sorted({pattern for pattern, _ in pairs}))
        known: list[tuple[int, float, bool]] = []
        unknown: dict[str, None] = {}
        unknown_count = 0
        for key, at, positive in outcomes:
            index = self.entity_index.get(key)
            if index is None and key not in self.states:
                unknown_count += 1
                if len(unknown) < _SHOWN_UNKNOWN:
                    unknown[f"{key[0]}/{key[1]}"] = None
                continue
            if index is not None:  # an entity with evidence only outside the window: no examples
                known.append((index, at, positive))
        dataset = Dataset(
            patterns=patterns,
            pairs=pairs,
            times=np.frombuffer(self.times, dtype=np.float64),
            entity=np.frombuffer(self.entity, dtype=np.int64),
            pair_masses=pair_masses,
            masses=sparse.csr_matrix((len(self.times), len(patterns))),
            critical=np.frombuffer(self.critical, dtype=np.float64),
            diversity=np.frombuffer(self.diversity, dtype=np.float64),
            impact=np.frombuffer(self.impact, dtype=np.float64) * self.base.impact_amplification,
            outcome_entity=np.asarray([k[0] for k in known], dtype=np.int64),
            outcome_time=np.asarray([k[1] for k in known], dtype=np.float64),
            outcome_positive=np.asarray([k[2] for k in known], dtype=np.bool_),
            entities=tuple(sorted(self.entity_index, key=self.entity_index.__getitem__)),
            base=self.base,
            since=self.since,
            until=self.until,
            evidence_read=self.read,
            undecodable=undecodable,
            unknown_outcomes=unknown_count,
            unknown_entities=tuple(unknown),
        )
        base_masses = dataset.pattern_masses(severity_array(self.base.severity_weights))
        object.__setattr__(dataset, "masses", base_masses)
        return dataset


def severity_array(weights: SeverityWeights) -> NDArray[np.float64]:
    """A config's severity weights in :data:`SEVERITIES` order."""
    return np.array([getattr(weights, s.value) for s in SEVERITIES], dtype=np.float64)


def _check_window(since: datetime, until: datetime) -> None:
    if since >= until:
        raise EmptyWindowError(
            f"--since ({since.isoformat()}) must be before --until ({until.isoformat()})"
        )


def dataset_from_evidence(
    evidence: list[tuple[EntityKey, Evidence]],
    outcomes: list[tuple[EntityKey, float, bool]],
    *,
    base: AnalyzerConfig,
    since: datetime,
    until: datetime,
) -> Dataset:
    """The dataset of evidence given in stream order and outcomes ``(entity, time, positive)``.

    Raises:
        EmptyWindowError: ``since`` is not before ``until``.
        NoEvidenceError: no evidence was observed in the window.
    """
    _check_window(since, until)
    builder = _Builder(base, since, until)
    for key, item in evidence:
        builder.add(key, item)
    return builder.dataset(outcomes, 0)


async def build_dataset(
    store: EventStore,
    *,
    base: AnalyzerConfig,
    since: datetime,
    until: datetime,
    tenant: str | None = None,
) -> Dataset:
    """Read the evidence, outcome and review streams and build the dataset of the window.

    Evidence is folded from the start of the stream (earlier evidence still
    counts, decayed), and an example is recorded for each evidence observed
    in ``[since, until]``. Outcomes are read whole: positive outcomes and
    ``confirmed`` review decisions are positives, the others negatives; which
    of them a label may see is decided later (:meth:`Dataset.labels`). With
    ``tenant``, only that tenant's evidence and outcomes are read.

    Raises:
        EmptyWindowError: ``since`` is not before ``until``.
        NoEvidenceError: no evidence was observed in the window.
    """
    _check_window(since, until)
    builder = _Builder(base, since, until)
    undecodable = 0
    batches = store.read_batches(stream=store.config.stream_for("evidence"))
    async with aclosing(batches):
        async for batch in batches:
            for raw in batch:
                try:  # one decoding pass; the analyzer reads v1 evidence as v2 itself
                    event, data = store.decoded(raw, upcast=False)
                    if not isinstance(data, EvidenceData | EvidenceDataV2):
                        event, data = store.schemas.upcast(event, data)
                    if not isinstance(data, EvidenceData | EvidenceDataV2):
                        raise UnexpectedEventTypeError(event.type, EVIDENCE_RECORDED_V2)
                    item = Evidence.from_data(
                        data,
                        event_id=event.id,
                        source=event.source,
                        sequence=raw.seq,
                        event_time=event.time,
                    )
                except (EventStoreError, ValueError):
                    undecodable += 1
                    continue
                key = (event.tenant or "", event.subject or "")
                if tenant is None or key[0] == tenant:
                    builder.add(key, item, owned=True)
    outcomes = [o async for o in _outcomes(store) if tenant is None or o[0][0] == tenant]
    return builder.dataset(outcomes, undecodable)


async def _outcomes(store: EventStore) -> AsyncIterator[tuple[EntityKey, float, bool]]:
    """Every outcome ``(entity, observed time, positive)``: recorded outcomes, then decisions."""
    for category in (OUTCOMES_STREAM.category, REVIEW_STREAM.category):
        stream = store.config.stream_for(category)
        async for rec in store.read_all(stream=stream):
            found = _outcome(store, rec)
            if found is not None:
                yield found


def _outcome(store: EventStore, rec: RecordedEvent) -> tuple[EntityKey, float, bool] | None:  # noqa: PLR0911 - one return per kind of message
    event = rec.event
    if event is None or event.data is None:
        return None
    key = (event.tenant or "", event.subject or "")
    try:
        if event.type == OUTCOME_RECORDED:
            data = store.schemas.typed_data(event)
            if not isinstance(data, OutcomeRecordedData) or data.observed_at is None:
                return None
            return key, data.observed_at.timestamp(), data.positive
        if event.type == DECIDED:
            decided = CaseDecidedData.model_validate(event.data)
            if decided.outcome == "escalated":
                return None
            return key, event.time.timestamp(), decided.outcome == "confirmed"
    except (EventStoreError, ValueError):
        return None
    return None
