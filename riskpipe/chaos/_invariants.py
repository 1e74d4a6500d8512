"""The invariants a chaos run must keep, checked over its history and the final streams.

Each check is a function of the history (what was attempted, acknowledged,
injected and observed) and the final state (what the streams hold after the
heal). A violation carries the smallest piece of history that shows it: the
ops of the one message, fault or sample concerned, never the whole run.

The checks assume nothing the history does not say: an append that timed out
(``info``) may or may not be stored, so it is neither lost nor a phantom;
only an acknowledged append (``ok``) must be stored, and only a definite
failure (``fail``) must not be.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from riskpipe.chaos._history import (
    APPEND,
    CHECKPOINT,
    FAULT,
    HEAL,
    PROBE,
    RECOVERED,
    REDELIVERY,
    Op,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from riskpipe.chaos._final import Effect, FinalState, StoredEvidence

__all__ = ["INVARIANTS", "RECOVERY_LIMIT", "Report", "Violation", "check"]

RECOVERY_LIMIT = 60.0
"""Seconds after the last heal by which the pipeline must be quiet, its replicas agreeing."""
_CLOCK_SLACK = 0.005
_DELIVERIES_PER_FAULT = 2
"""Deliveries past ``max_deliver`` one fault may explain: the one it cut short, and a spare."""
"""Seconds the server's stamp of a message may read later than the harness's clock."""


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken invariant, and the history that shows it."""

    invariant: str
    message: str
    ops: tuple[Op, ...] = ()

    def render(self) -> str:
        """The violation and its ops, one per line."""
        return "\n".join([f"[{self.invariant}] {self.message}", *(f"    {op}" for op in self.ops)])


@dataclass(slots=True)
class Report:
    """Every invariant checked, and what broke them."""

    checked: tuple[str, ...]
    violations: list[Violation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No invariant is violated."""
        return not self.violations

    def violated(self) -> dict[str, list[Violation]]:
        """The violations of each broken invariant, in the order checked."""
        found: dict[str, list[Violation]] = {}
        for violation in self.violations:
            found.setdefault(violation.invariant, []).append(violation)
        return found


@dataclass(slots=True)
class _Index:
    """The history and the final state, looked up by message."""

    history: Sequence[Op]
    final: FinalState
    invokes: dict[str, list[Op]] = field(default_factory=lambda: defaultdict(list))
    completions: dict[str, list[Op]] = field(default_factory=lambda: defaultdict(list))
    stored: dict[str, list[StoredEvidence]] = field(default_factory=lambda: defaultdict(list))
    evidence: dict[int, StoredEvidence] = field(default_factory=dict)
    assessed: dict[int, list[Effect]] = field(default_factory=lambda: defaultdict(list))
    dead: dict[int, list[Effect]] = field(default_factory=lambda: defaultdict(list))
    _faults: list[tuple[float, float]] | None = None

    @classmethod
    def of(cls, history: Sequence[Op], final: FinalState) -> _Index:
        index = cls(history, final)
        for op in history:
            if op.op != APPEND or not isinstance(op.value.get("msg_id"), str):
                continue
            msg_id = op.value["msg_id"]
            (index.invokes if op.type == "invoke" else index.completions)[msg_id].append(op)
        for rec in final.evidence:
            index.evidence[rec.sequence] = rec
            if rec.msg_id is not None:
                index.stored[rec.msg_id].append(rec)
        for effect in final.effects:
            (index.assessed if effect.kind == "assessment" else index.dead)[effect.evidence].append(
                effect
            )
        return index

    def expect(self, rec: StoredEvidence) -> str | None:
        """What should become of a stored evidence, as its appends said (``None``: unknown).

        Evidence the analyzer fails on for a few deliveries must be assessed,
        unless faults during its retries cost it the deliveries it had to
        spare: then one dead letter is as right (``None``: either).
        """
        for op in self.invokes.get(rec.msg_id or "", ()):
            expect = op.value.get("expect")
            if isinstance(expect, str):
                return None if expect == "assess" and self._spent(rec, op) else expect
        return None

    def _spent(self, rec: StoredEvidence, invoke: Op) -> bool:
        """Whether faults while ``rec`` failed could have used up its spare deliveries."""
        failures = invoke.value.get("failures")
        letters = self.dead.get(rec.sequence, ())
        if not isinstance(failures, int) or len(letters) != 1 or self.assessed.get(rec.sequence):
            return False
        during = self.faults_during(rec.stored_at, letters[0].stored_at)
        return failures + during >= self.final.max_deliver

    def faults_during(self, start: float, end: float) -> int:
        """Faults in effect at some moment from ``start`` to ``end`` (injected before or in it)."""
        if self._faults is None:
            self._faults = _fault_spans(self.history)
        return sum(
            1 for began, healed in self._faults if began <= end and healed >= start - _CLOCK_SLACK
        )

    def ops_of(self, msg_id: str | None) -> tuple[Op, ...]:
        """Every append op of one message, in history order."""
        if msg_id is None:
            return ()
        return tuple(sorted([*self.invokes[msg_id], *self.completions[msg_id]], key=_line))


def _line(op: Op) -> int:
    return op.line


def _fault_spans(history: Sequence[Op]) -> list[tuple[float, float]]:
    """Each fault's time and its heal's (never healed: infinity)."""
    open_at: dict[tuple[str, str], list[float]] = defaultdict(list)
    spans: list[tuple[float, float]] = []
    for op in history:
        key = (str(op.value.get("fault")), str(op.value.get("target")))
        if op.op == FAULT:
            open_at[key].append(op.time)
        elif op.op == HEAL and open_at[key]:
            spans.append((open_at[key].pop(0), op.time))
    spans.extend((began, math.inf) for times in open_at.values() for began in times)
    return spans


def _no_lost_evidence(ix: _Index) -> Iterable[Violation]:
    """Every acknowledged append is stored, at the sequence its acknowledgement named."""
    for msg_id, completions in ix.completions.items():
        for op in completions:
            if op.type != "ok":
                continue
            stored = ix.stored.get(msg_id)
            if not stored:
                yield Violation(
                    "no-lost-evidence",
                    f"append of {msg_id!r} was acknowledged but is not stored",
                    ix.ops_of(msg_id),
                )
                continue
            sequence = op.value.get("sequence")
            if isinstance(sequence, int) and sequence not in {rec.sequence for rec in stored}:
                held = ix.evidence.get(sequence)
                what = f"{held.msg_id!r}" if held is not None else "nothing"
                yield Violation(
                    "no-lost-evidence",
                    f"append of {msg_id!r} was acknowledged at sequence {sequence}, "
                    f"which holds {what}",
                    ix.ops_of(msg_id),
                )


def _no_phantom_evidence(ix: _Index) -> Iterable[Violation]:
    """Every stored evidence was appended by someone, and not by an append that surely failed."""
    for rec in ix.final.evidence:
        invokes = ix.invokes.get(rec.msg_id or "")
        if not invokes:
            yield Violation(
                "no-phantom-evidence",
                f"evidence {rec.sequence} ({rec.msg_id!r}) is stored but nobody appended it",
            )
            continue
        completions = ix.completions.get(rec.msg_id or "", [])
        if len(completions) == len(invokes) and all(op.type == "fail" for op in completions):
            yield Violation(
                "no-phantom-evidence",
                f"evidence {rec.sequence} ({rec.msg_id!r}) is stored although every append "
                "of it failed",
                ix.ops_of(rec.msg_id),
            )


def _no_duplicate_evidence(ix: _Index) -> Iterable[Violation]:
    """One message id is stored once within the deduplication window."""
    window = ix.final.duplicate_window
    for msg_id, stored in ix.stored.items():
        ordered = sorted(stored, key=lambda rec: rec.stored_at)
        for first, second in itertools.pairwise(ordered):
            if second.stored_at - first.stored_at < window:
                yield Violation(
                    "no-duplicate-evidence",
                    f"{msg_id!r} is stored at sequences {first.sequence} and {second.sequence}, "
                    f"{second.stored_at - first.stored_at:.3f} s apart (window {window:g} s)",
                    ix.ops_of(msg_id),
                )


def _exactly_one_assessment(ix: _Index) -> Iterable[Violation]:
    """Each valid evidence is assessed once; nothing is assessed twice, nor what is not stored."""
    for rec in ix.final.evidence:
        count = len(ix.assessed.get(rec.sequence, ()))
        expect = ix.expect(rec)
        if (expect == "assess" and count != 1) or count > 1:
            yield Violation(
                "exactly-one-assessment",
                f"evidence {rec.sequence} ({rec.msg_id!r}) has {count} assessments",
                ix.ops_of(rec.msg_id),
            )
    for sequence, effects in ix.assessed.items():
        if sequence not in ix.evidence:
            risk = ", ".join(str(effect.sequence) for effect in effects)
            yield Violation(
                "exactly-one-assessment",
                f"assessment(s) at {risk} answer evidence {sequence}, which is not stored",
            )


def _per_entity_order(ix: _Index) -> Iterable[Violation]:
    """An entity's assessments follow its evidence's order, and none of its evidence is skipped."""
    last: dict[str, tuple[int, int]] = {}
    for effect in ix.final.assessments():
        rec = ix.evidence.get(effect.evidence)
        if rec is None:
            continue  # reported as an assessment of nothing
        before = last.get(rec.entity)
        if before is not None and effect.evidence <= before[1]:
            yield Violation(
                "per-entity-order",
                f"{rec.entity}: assessment {effect.sequence} answers evidence {effect.evidence} "
                f"after assessment {before[0]} answered evidence {before[1]}",
                ix.ops_of(rec.msg_id),
            )
        last[rec.entity] = (effect.sequence, effect.evidence)
    by_entity: dict[str, list[StoredEvidence]] = defaultdict(list)
    for rec in sorted(ix.final.evidence, key=lambda rec: rec.sequence):
        by_entity[rec.entity].append(rec)
    for entity, records in by_entity.items():
        later: int | None = None  # the first handled evidence after the one looked at
        for rec in reversed(records):
            handled = bool(ix.assessed.get(rec.sequence) or ix.dead.get(rec.sequence))
            if not handled and later is not None:
                yield Violation(
                    "per-entity-order",
                    f"{entity}: evidence {rec.sequence} was skipped: never assessed nor "
                    f"dead-lettered, while later evidence {later} was",
                    ix.ops_of(rec.msg_id),
                )
            if handled:
                later = rec.sequence


def _dead_letters_complete(ix: _Index) -> Iterable[Violation]:
    """One dead letter per poison message; none for evidence that was (or should be) assessed."""
    for rec in ix.final.evidence:
        letters = len(ix.dead.get(rec.sequence, ()))
        assessed = len(ix.assessed.get(rec.sequence, ()))
        expect = ix.expect(rec)
        if expect == "dead-letter" and (letters != 1 or assessed):
            yield Violation(
                "dead-letters-complete",
                f"poison evidence {rec.sequence} ({rec.msg_id!r}) has {letters} dead letters "
                f"and {assessed} assessments (expected one dead letter)",
                ix.ops_of(rec.msg_id),
            )
        elif letters and (expect == "assess" or assessed):
            yield Violation(
                "dead-letters-complete",
                f"evidence {rec.sequence} ({rec.msg_id!r}) was dead-lettered {letters} time(s) "
                f"but {'was assessed' if assessed else 'should have been assessed'}",
                ix.ops_of(rec.msg_id),
            )
    for sequence in ix.dead:
        if sequence not in ix.evidence:
            yield Violation(
                "dead-letters-complete", f"a dead letter names evidence {sequence}: not stored"
            )


def _checkpoints(ix: _Index) -> Iterable[Violation]:
    """A checkpoint never decreases, and never covers evidence not yet handled when it was read."""
    previous: dict[tuple[str, Any], Op] = {}
    handled_at: dict[int, float] = {}
    for effect in ix.final.effects:
        at = handled_at.get(effect.evidence)
        handled_at[effect.evidence] = effect.stored_at if at is None else min(at, effect.stored_at)
    for op in ix.history:
        if op.op != CHECKPOINT:
            continue
        position, partition = op.value.get("position"), op.value.get("partition")
        if not isinstance(position, int):
            continue
        key = (str(op.value.get("projection")), partition)
        before = previous.get(key)
        if before is not None and position < int(before.value["position"]):
            yield Violation(
                "checkpoints",
                f"checkpoint of {key[0]} partition {partition} went back from "
                f"{before.value['position']} to {position}",
                (before, op),
            )
        previous[key] = op
        for rec in ix.final.evidence:
            if rec.sequence > position or (partition is not None and rec.partition != partition):
                continue
            at = handled_at.get(rec.sequence)
            if at is None or at > op.time + _CLOCK_SLACK:
                when = "never" if at is None else f"only {at - op.time:.3f} s later"
                yield Violation(
                    "checkpoints",
                    f"checkpoint {position} of {key[0]} partition {partition} covered evidence "
                    f"{rec.sequence}, handled {when}",
                    (op,),
                )
                break


def _recovery(ix: _Index) -> Iterable[Violation]:
    """Every fault healed; quiet within the limit after the last heal, the replicas agreeing."""
    open_faults: dict[tuple[str, str], Op] = {}
    last_heal: Op | None = None
    for op in ix.history:
        key = (str(op.value.get("fault")), str(op.value.get("target")))
        if op.op == FAULT:
            open_faults[key] = op
        elif op.op == HEAL:
            open_faults.pop(key, None)
            last_heal = op
    for op in open_faults.values():
        yield Violation("recovery", "a fault was never healed", (op,))
    if last_heal is None:
        return
    recovered = [op for op in ix.history if op.op == RECOVERED and op.line > last_heal.line]
    if not recovered:
        yield Violation(
            "recovery", "the pipeline never recovered after the last heal", (last_heal,)
        )
        return
    took = recovered[0].time - last_heal.time
    if took > RECOVERY_LIMIT:
        yield Violation(
            "recovery",
            f"recovered {took:.1f} s after the last heal (limit {RECOVERY_LIMIT:g} s)",
            (last_heal, recovered[0]),
        )
    if recovered[0].value.get("replicas_agree") is not True:
        yield Violation("recovery", "the replicas disagree after recovery", (recovered[0],))


def _bounded_redelivery(ix: _Index) -> Iterable[Violation]:
    """Redeliveries stay within what the faults and the poison explain: no hot loop."""
    final = ix.final
    for effect in final.dead_letters():
        rec = ix.evidence.get(effect.evidence)
        since = rec.stored_at if rec is not None else effect.stored_at
        # a fault may cut the last delivery short (its dead letter not written)
        # and send it again: each fault while it was handled explains a few more
        during = ix.faults_during(since, effect.stored_at)
        allowed = final.max_deliver + _DELIVERIES_PER_FAULT * during
        if effect.delivery_count > allowed:
            yield Violation(
                "bounded-redelivery",
                f"dead letter {effect.sequence} (evidence {effect.evidence}) was delivered "
                f"{effect.delivery_count} times (max_deliver {final.max_deliver}, "
                f"{during} faults meanwhile)",
            )
    observed = [op for op in ix.history if op.op == REDELIVERY]
    if not observed:
        if ix.invokes:
            yield Violation("bounded-redelivery", "the run recorded no redelivery counts")
        return
    faults = sum(1 for op in ix.history if op.op == FAULT)
    failing = 0
    for rec in final.evidence:
        for op in ix.invokes.get(rec.msg_id or "", ())[:1]:
            failures = op.value.get("failures", 0)
            failures = failures if isinstance(failures, int) else 0
            dead = op.value.get("expect") == "dead-letter"
            failing += final.max_deliver if dead else min(failures, final.max_deliver)
    bound = failing + final.max_in_flight * (faults + final.workers)
    for op in observed:
        redelivered = op.value.get("redelivered")
        if isinstance(redelivered, int) and redelivered > bound:
            yield Violation(
                "bounded-redelivery",
                f"{op.value.get('projection')}: {redelivered} redeliveries, more than the "
                f"{bound} that {faults} faults and the failing evidence explain",
                (op,),
            )


def _security(ix: _Index) -> Iterable[Violation]:
    """Every probe was refused, and nobody but a worker wrote on the risk stream."""
    pending: dict[tuple[str, str], Op] = {}
    for op in ix.history:
        if op.op != PROBE:
            continue
        key = (op.process, str(op.value.get("probe")))
        if op.type == "invoke":
            pending[key] = op
            continue
        invoke = pending.pop(key, None)
        # info: no answer (a server down); stored after all, it is phantom evidence
        if op.type not in {"ok", "info"}:
            shown = (invoke, op) if invoke is not None else (op,)
            yield Violation("security", f"probe {key[1]!r} was not refused", shown)
    for op in pending.values():
        yield Violation("security", f"probe {op.value.get('probe')!r} never completed", (op,))
    for sequence, msg_id in ix.final.foreign:
        yield Violation(
            "security",
            f"the risk stream holds a message no worker wrote: sequence {sequence}, id {msg_id!r}",
            tuple(op for op in ix.history if op.op == PROBE and op.value.get("msg_id") == msg_id),
        )


_CHECKS: tuple[tuple[str, Callable[[_Index], Iterable[Violation]]], ...] = (
    ("no-lost-evidence", _no_lost_evidence),
    ("no-phantom-evidence", _no_phantom_evidence),
    ("no-duplicate-evidence", _no_duplicate_evidence),
    ("exactly-one-assessment", _exactly_one_assessment),
    ("per-entity-order", _per_entity_order),
    ("dead-letters-complete", _dead_letters_complete),
    ("checkpoints", _checkpoints),
    ("recovery", _recovery),
    ("bounded-redelivery", _bounded_redelivery),
    ("security", _security),
)
INVARIANTS: tuple[str, ...] = tuple(name for name, _ in _CHECKS)
"""The invariants, in the order they are checked and reported."""


def check(history: Sequence[Op], final: FinalState) -> Report:
    """Check every invariant over ``history`` and ``final``."""
    index = _Index.of(history, final)
    report = Report(INVARIANTS)
    for _, invariant in _CHECKS:
        report.violations.extend(invariant(index))
    return report
