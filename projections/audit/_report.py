"""What a replay found: counts, per-entity results, findings and, for a what-if, level changes."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from analyzers import RiskLevel

if TYPE_CHECKING:
    from projections.audit._diff import FieldDifference
    from projections.audit._records import EntityKey
    from projections.audit._scope import ReplayScope

__all__ = [
    "Counts",
    "EntityLevelChange",
    "EntityReplay",
    "Finding",
    "FindingKind",
    "LevelChanges",
    "ReplayMode",
    "ReplayReport",
]

FindingKind = Literal[
    "differs", "config_mismatch", "version_mismatch", "extra", "unreadable", "missing"
]
ReplayMode = Literal["verify", "what-if"]
_FAILING: frozenset[str] = frozenset(
    {"differs", "config_mismatch", "version_mismatch", "extra", "unreadable", "missing"}
)
_RANK = {level.value: rank for rank, level in enumerate(RiskLevel)}
_LAST = 1 << 63


@dataclass(frozen=True, slots=True)
class Finding:
    """Something the replay could not confirm, with where it is and what differs."""

    kind: FindingKind
    tenant: str
    entity: str
    evidence_sequence: int | None
    assessment_sequence: int | None
    detail: str
    difference: FieldDifference | None = None

    @property
    def order(self) -> tuple[int, int, str, str, str, str]:
        """Where it sorts: by evidence, then risk sequence (findings without one last)."""
        evidence, at = self.evidence_sequence, self.assessment_sequence
        return (
            _LAST if evidence is None else evidence,
            _LAST if at is None else at,
            self.kind, self.tenant, self.entity, self.detail,
        )  # fmt: skip

    def fails(self, *, strict: bool = False) -> bool:  # noqa: ARG002 - kept for callers
        """Whether it makes the replay fail: every kind does, with or without ``strict``."""
        return self.kind in _FAILING

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "kind": self.kind,
            "tenant": self.tenant,
            "entity": self.entity,
            "evidence_sequence": self.evidence_sequence,
            "assessment_sequence": self.assessment_sequence,
            "detail": self.detail,
            "difference": self.difference.as_dict() if self.difference else None,
        }


@dataclass(slots=True)
class Counts:
    """How many evidence events and assessments ended which way."""

    evidence: int = 0
    checked: int = 0
    """Assessments re-derived and compared with the recorded ones."""
    identical: int = 0
    differing: int = 0
    config_mismatch: int = 0
    version_mismatch: int = 0
    rescored: int = 0
    """What-if only: assessments scored with another config or version, re-scored."""
    extra: int = 0
    unreadable: int = 0
    missing: int = 0
    dead_lettered: int = 0
    pending: int = 0

    def count(self, kind: FindingKind) -> None:
        """Count one finding."""
        name = "differing" if kind == "differs" else kind
        setattr(self, name, getattr(self, name) + 1)

    def failures(self, *, strict: bool = False) -> int:  # noqa: ARG002 - kept for callers
        """How many findings make the replay fail.

        A version mismatch (an assessment this build cannot re-derive) fails
        with or without ``strict``: a strict replay re-derives only the current
        analyzer version, so it finds more of them, but counts them the same.
        """
        failing = self.differing + self.config_mismatch + self.version_mismatch
        return failing + self.extra + self.unreadable + self.missing

    def absorb(self, other: Counts) -> None:
        """Add ``other``'s counts to these."""
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, int]:
        """JSON-ready."""
        return asdict(self)


@dataclass(slots=True)
class EntityReplay:
    """One entity's replay: its counts and the first thing found wrong."""

    tenant: str
    entity: str
    counts: Counts = field(default_factory=Counts)
    first_finding: Finding | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "tenant": self.tenant,
            "entity": self.entity,
            **self.counts.as_dict(),
            "first_finding": self.first_finding.as_dict() if self.first_finding else None,
        }


@dataclass(slots=True)
class EntityLevelChange:
    """What-if: how one entity's levels would have changed."""

    changed: int = 0
    recorded_final: str | None = None
    what_if_final: str | None = None


@dataclass(slots=True)
class LevelChanges:
    """What-if: recorded level against the level the other config gives, per assessment."""

    transitions: Counter[tuple[str, str]] = field(default_factory=Counter)
    unchanged: int = 0
    entities: dict[EntityKey, EntityLevelChange] = field(default_factory=dict)

    def add(self, key: EntityKey, recorded: str, what_if: str) -> None:
        """Count one assessment's recorded and what-if levels."""
        entity = self.entities.setdefault(key, EntityLevelChange())
        entity.recorded_final, entity.what_if_final = recorded, what_if
        if recorded == what_if:
            self.unchanged += 1
            return
        self.transitions[recorded, what_if] += 1
        entity.changed += 1

    @property
    def upgrades(self) -> int:
        """Assessments whose level would have been higher."""
        return sum(n for (old, new), n in self.transitions.items() if _RANK[new] > _RANK[old])

    @property
    def downgrades(self) -> int:
        """Assessments whose level would have been lower."""
        return sum(n for (old, new), n in self.transitions.items() if _RANK[new] < _RANK[old])

    def absorb(self, other: LevelChanges) -> None:
        """Add another replay's level changes, of other entities, to these."""
        self.transitions.update(other.transitions)
        self.unchanged += other.unchanged
        self.entities.update(other.entities)

    def affected(self) -> dict[EntityKey, EntityLevelChange]:
        """The entities with at least one changed level."""
        return {key: change for key, change in sorted(self.entities.items()) if change.changed}

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "upgrades": self.upgrades,
            "downgrades": self.downgrades,
            "unchanged": self.unchanged,
            "transitions": {
                f"{old}->{new}": n
                for (old, new), n in sorted(
                    self.transitions.items(), key=lambda kv: (_RANK[kv[0][0]], _RANK[kv[0][1]])
                )
            },
            "entities_affected": [
                {"tenant": tenant, "entity": entity, **asdict(change)}
                for (tenant, entity), change in self.affected().items()
            ],
        }


@dataclass(slots=True)
class ReplayReport:
    """Everything a replay found. ``ok`` is false when anything differs or is missing."""

    mode: ReplayMode
    scope: ReplayScope
    projection: str
    analyzer_version: str
    config_fingerprint: str
    strict: bool = False
    totals: Counts = field(default_factory=Counts)
    entities: dict[EntityKey, EntityReplay] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    """The first ``max_findings`` findings in log order (:attr:`Finding.order`); ``totals``
    counts them all."""
    level_changes: LevelChanges | None = None
    elapsed_seconds: float = 0.0
    jobs: int = 1
    """How many processes replayed it."""

    @property
    def failures(self) -> int:
        """How many findings make the replay fail."""
        return self.totals.failures()

    @property
    def ok(self) -> bool:
        """Nothing differs and nothing is missing."""
        return self.failures == 0

    def add(self, finding: Finding, max_findings: int) -> None:
        """Count ``finding`` and keep it if it is among the first ``max_findings`` in log order."""
        self.totals.count(finding.kind)
        entity = self.entity((finding.tenant, finding.entity))
        entity.counts.count(finding.kind)
        if entity.first_finding is None or finding.order < entity.first_finding.order:
            entity.first_finding = finding
        self.findings.append(finding)
        if len(self.findings) >= 2 * max_findings + 64:
            self.settle(max_findings)

    def settle(self, max_findings: int) -> None:
        """Keep the first ``max_findings`` findings in log order, whatever order they came in."""
        self.findings.sort(key=lambda finding: finding.order)
        del self.findings[max_findings:]

    def absorb(self, other: ReplayReport) -> None:
        """Add the report of another part of the same replay (other entities) to this one."""
        self.totals.absorb(other.totals)
        for key, found in other.entities.items():
            mine = self.entities.get(key)
            if mine is None:
                self.entities[key] = found
                continue
            mine.counts.absorb(found.counts)
            first = [f for f in (mine.first_finding, found.first_finding) if f is not None]
            mine.first_finding = min(first, key=lambda f: f.order, default=None)
        self.findings.extend(other.findings)
        if self.level_changes is not None and other.level_changes is not None:
            self.level_changes.absorb(other.level_changes)

    def entity(self, key: EntityKey) -> EntityReplay:
        """The result of entity ``key``, created on first use."""
        found = self.entities.get(key)
        if found is None:
            found = self.entities[key] = EntityReplay(*key)
        return found

    def as_dict(self) -> dict[str, Any]:
        """The whole report as one JSON-ready document."""
        return {
            "mode": self.mode,
            "ok": self.ok,
            "scope": self.scope.as_dict(),
            "projection": self.projection,
            "analyzer_version": self.analyzer_version,
            "config_fingerprint": self.config_fingerprint,
            "strict": self.strict,
            "summary": {**self.totals.as_dict(), "failures": self.failures},
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "jobs": self.jobs,
            "entities": [e.as_dict() for _, e in sorted(self.entities.items())],
            "findings": [f.as_dict() for f in self.findings],
            "level_changes": self.level_changes.as_dict() if self.level_changes else None,
        }
