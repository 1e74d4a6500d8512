"""Each invariant, fed a hand-made history with exactly its violation, reports it (and only it)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import pytest

from riskpipe.chaos import (
    APPEND,
    CHECKPOINT,
    FAULT,
    HEAL,
    INVARIANTS,
    PROBE,
    RECOVERED,
    REDELIVERY,
    Effect,
    FinalState,
    HistoryError,
    HistoryWriter,
    Op,
    OpType,
    StoredEvidence,
    check,
    parse_history,
    read_history,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

T0 = 1_800_000_000.0


class Run:
    """A small clean run: six evidence of two entities, one poison, one fault, all healed."""

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.final = FinalState(duplicate_window=120.0, max_deliver=5, max_in_flight=10)
        self.clock = T0
        # four evidence of entity a, two of b; a-2 acknowledged after a timeout's resend
        for n, entity in enumerate(["a", "a", "b", "a", "b", "a"], start=1):
            self.append(f"m{n}", entity, sequence=n)
        self.append("poison", "b", sequence=7, expect="dead-letter")
        self.op("p1", APPEND, "invoke", msg_id="lost-in-flight", entity="t.a", expect="assess")
        self.op("p1", APPEND, "info", msg_id="lost-in-flight", error="timeout")
        self.op("nemesis", FAULT, "info", fault="kill-worker", target="w1")
        for sequence in range(1, 4):
            self.effect("assessment", sequence, sequence)
        self.checkpoint(0, 3)
        self.op("nemesis", HEAL, "info", fault="kill-worker", target="w1")
        for sequence in range(4, 7):
            self.effect("assessment", sequence, sequence)
        self.effect("dead-letter", 1, 7, delivery_count=1)
        self.checkpoint(0, 7)
        self.op("checker", RECOVERED, "info", seconds=2.0, replicas_agree=True)
        self.op("checker", REDELIVERY, "info", projection="risk", redelivered=4)
        self.op("probe", PROBE, "invoke", probe="producer-publishes-assessment")
        self.op("probe", PROBE, "ok", probe="producer-publishes-assessment")

    def tick(self, seconds: float = 0.1) -> float:
        """Advance the run's clock; the new time."""
        self.clock += seconds
        return self.clock

    def op(self, process: str, name: str, type_: OpType, **value: Any) -> Op:
        """Record an op, a tick later than the last."""
        entry = Op(self.tick(), process, name, type_, value, len(self.ops) + 1)
        self.ops.append(entry)
        return entry

    def append(self, msg_id: str, entity: str, *, sequence: int, expect: str = "assess") -> None:
        """An acknowledged append, and the evidence it stored."""
        self.op("p1", APPEND, "invoke", msg_id=msg_id, entity=f"t.{entity}", expect=expect)
        self.final.evidence.append(StoredEvidence(sequence, msg_id, f"t.{entity}", self.tick(), 0))
        self.op("p1", APPEND, "ok", msg_id=msg_id, sequence=sequence, duplicate=False)

    def effect(self, kind: str, sequence: int, evidence: int, *, delivery_count: int = 0) -> None:
        """An assessment or dead letter of ``evidence``, stored now."""
        self.final.effects.append(
            Effect(kind, sequence, evidence, self.tick(), delivery_count)  # type: ignore[arg-type]
        )

    def checkpoint(self, partition: int, position: int) -> None:
        """A checkpoint sample of the risk projection."""
        self.op("checker", CHECKPOINT, "info", projection="risk", partition=partition,
                position=position)  # fmt: skip

    def violated(self) -> dict[str, list[str]]:
        """The violations found, rendered, by invariant."""
        report = check(self.ops, self.final)
        return {name: [v.render() for v in found] for name, found in report.violated().items()}

    def replace_evidence(self, sequence: int, **changes: Any) -> None:
        """Change a stored evidence's fields."""
        self.final.evidence = [
            dataclasses.replace(rec, **changes) if rec.sequence == sequence else rec
            for rec in self.final.evidence
        ]

    def drop_effect(self, kind: str, evidence: int) -> None:
        """Remove what a projection made of ``evidence``."""
        self.final.effects = [
            e for e in self.final.effects if (e.kind, e.evidence) != (kind, evidence)
        ]


def test_a_clean_run_violates_nothing() -> None:
    """The reference run is clean: the breakages below are the only difference."""
    run = Run()
    report = check(run.ops, run.final)
    assert report.checked == INVARIANTS
    assert len(INVARIANTS) == 10
    assert report.ok, [v.render() for v in report.violations]


def _lost(run: Run) -> None:
    run.final.evidence = [rec for rec in run.final.evidence if rec.msg_id != "m3"]
    run.drop_effect("assessment", 3)


def _acknowledged_elsewhere(run: Run) -> None:
    ok = next(op for op in run.ops if op.type == "ok" and op.value.get("msg_id") == "m2")
    run.ops[run.ops.index(ok)] = dataclasses.replace(ok, value={**ok.value, "sequence": 5})


def _phantom(run: Run) -> None:
    run.final.evidence.append(StoredEvidence(8, "nobody", "t.c", run.tick(), 0))
    run.effect("assessment", 7, 8)


def _stored_after_failing(run: Run) -> None:
    run.op("p1", APPEND, "invoke", msg_id="refused", entity="t.c", expect="assess")
    run.op("p1", APPEND, "fail", msg_id="refused", error="validation")
    run.final.evidence.append(StoredEvidence(8, "refused", "t.c", run.tick(), 0))
    run.effect("assessment", 7, 8)


def _duplicate(run: Run) -> None:
    run.final.evidence.append(StoredEvidence(8, "m6", "t.a", run.tick(), 0))
    run.effect("assessment", 7, 8)


def _assessed_twice(run: Run) -> None:
    run.effect("assessment", 7, 6)


def _never_assessed(run: Run) -> None:
    run.drop_effect("assessment", 6)  # the entity's last: no later evidence, so no gap


def _out_of_order(run: Run) -> None:
    run.final.effects = [
        dataclasses.replace(e, sequence={1: 2, 2: 1}.get(e.sequence, e.sequence))
        if e.kind == "assessment"
        else e
        for e in run.final.effects
    ]


def _poison_not_dead_lettered(run: Run) -> None:
    run.drop_effect("dead-letter", 7)


def _good_evidence_dead_lettered(run: Run) -> None:
    run.effect("dead-letter", 2, 5, delivery_count=5)


def _valid_evidence_only_dead_lettered(run: Run) -> None:
    run.final.effects = [
        dataclasses.replace(e, kind="dead-letter", delivery_count=5) if e.evidence == 6 else e
        for e in run.final.effects
    ]


def _checkpoint_back(run: Run) -> None:
    run.checkpoint(0, 6)


def _checkpoint_ahead(run: Run) -> None:
    first = next(op for op in run.ops if op.op == CHECKPOINT)
    run.ops[run.ops.index(first)] = dataclasses.replace(first, value={**first.value, "position": 5})


def _never_healed(run: Run) -> None:
    run.op("nemesis", FAULT, "info", fault="kill-server", target="n1")


def _slow_recovery(run: Run) -> None:
    run.op("nemesis", FAULT, "info", fault="pause-worker", target="w1")
    run.op("nemesis", HEAL, "info", fault="pause-worker", target="w1")
    run.tick(61)
    run.op("checker", RECOVERED, "info", seconds=61.0, replicas_agree=True)


def _replicas_disagree(run: Run) -> None:
    run.ops = [op for op in run.ops if op.op != RECOVERED]
    run.op("checker", RECOVERED, "info", seconds=3.0, replicas_agree=False)


def _hot_loop(run: Run) -> None:
    run.op("checker", REDELIVERY, "info", projection="risk", redelivered=10_000)


def _delivered_past_max(run: Run) -> None:
    run.final.effects = [
        dataclasses.replace(e, delivery_count=8) if e.kind == "dead-letter" else e
        for e in run.final.effects
    ]


def _probe_took_effect(run: Run) -> None:
    run.op("probe", PROBE, "invoke", probe="injected-expected-sequence")
    run.op("probe", PROBE, "fail", probe="injected-expected-sequence")


def _foreign_assessment(run: Run) -> None:
    """A probe that had no answer (``info``), yet its assessment is on the risk stream."""
    run.op("probe", PROBE, "invoke", probe="producer-publishes-assessment", msg_id="x-1")
    run.op("probe", PROBE, "info", probe="producer-publishes-assessment", msg_id="x-1")
    run.final.foreign.append((9, "x-1"))


@pytest.mark.parametrize(
    ("invariant", "break_it", "words", "also"),
    [
        ("no-lost-evidence", _lost, "'m3' was acknowledged but is not stored", ()),
        ("no-lost-evidence", _acknowledged_elsewhere, "at sequence 5, which holds 'm5'", ()),
        ("no-phantom-evidence", _phantom, "nobody appended it", ()),
        ("no-phantom-evidence", _stored_after_failing, "every append of it failed", ()),
        ("no-duplicate-evidence", _duplicate, "'m6' is stored at sequences 6 and 8", ()),
        (
            "exactly-one-assessment",
            _assessed_twice,
            "evidence 6 ('m6') has 2 assessments",
            {"per-entity-order"},
        ),
        (
            "exactly-one-assessment",
            _never_assessed,
            "evidence 6 ('m6') has 0 assessments",
            {"checkpoints"},
        ),
        ("per-entity-order", _out_of_order, "t.a: assessment 2 answers evidence 1", ()),
        ("dead-letters-complete", _poison_not_dead_lettered, "has 0 dead letters", {"checkpoints"}),
        ("dead-letters-complete", _good_evidence_dead_lettered, "1 time(s) but was assessed", ()),
        (
            "dead-letters-complete",
            _valid_evidence_only_dead_lettered,
            "should have been",
            {"exactly-one-assessment"},
        ),
        ("checkpoints", _checkpoint_back, "went back from 7 to 6", ()),
        ("checkpoints", _checkpoint_ahead, "covered evidence 4, handled only", ()),
        ("recovery", _never_healed, "never healed", ()),
        ("recovery", _slow_recovery, "(limit 60 s)", ()),
        ("recovery", _replicas_disagree, "replicas disagree", ()),
        ("bounded-redelivery", _hot_loop, "10000 redeliveries", ()),
        (
            "bounded-redelivery",
            _delivered_past_max,
            "delivered 8 times (max_deliver 5, 1 faults",
            (),
        ),
        ("security", _probe_took_effect, "'injected-expected-sequence' was not refused", ()),
        ("security", _foreign_assessment, "no worker wrote: sequence 9, id 'x-1'", ()),
    ],
)
def test_each_invariant_reports_its_violation(
    invariant: str, break_it: Callable[[Run], None], words: str, also: set[str]
) -> None:
    """Its invariant reports it; ``also``: others the same defect really breaks too.

    A checkpoint past evidence never handled is itself a violation; an
    evidence assessed twice is also answered out of its entity's order.
    """
    run = Run()
    break_it(run)
    violated = run.violated()
    assert set(violated) == {invariant, *also}, violated
    assert any(words in text for text in violated[invariant]), violated[invariant]


def test_a_skipped_evidence_is_a_gap_in_the_entitys_order() -> None:
    """Evidence 2 of entity a never handled while 4 and 6 were: both the count and the gap."""
    run = Run()
    run.drop_effect("assessment", 2)
    violated = run.violated()
    assert set(violated) == {"exactly-one-assessment", "per-entity-order", "checkpoints"}
    assert "evidence 2 was skipped" in violated["per-entity-order"][0]


def test_a_violation_shows_only_the_ops_of_its_message() -> None:
    """The smallest piece of history: the one message's ops, with their line numbers."""
    run = Run()
    _lost(run)
    (violation,) = check(run.ops, run.final).violations
    assert [(op.type, op.value["msg_id"]) for op in violation.ops] == [
        ("invoke", "m3"),
        ("ok", "m3"),
    ]
    assert violation.render().splitlines()[1].lstrip().startswith(f"{violation.ops[0].line}: ")


def test_an_ambiguous_append_is_neither_lost_nor_phantom() -> None:
    """A timed-out append may be stored or not: both finals are valid."""
    stored = Run()
    stored.final.evidence.append(StoredEvidence(8, "lost-in-flight", "t.a", stored.tick(), 0))
    stored.effect("assessment", 7, 8)
    assert stored.violated() == {}
    assert Run().violated() == {}


def test_a_resend_after_the_window_may_be_stored_again() -> None:
    """Past the deduplication window a resend is new evidence, not a duplicate."""
    run = Run()
    run.tick(121)
    run.final.evidence.append(StoredEvidence(8, "m6", "t.a", run.tick(), 0))
    run.effect("assessment", 7, 8)
    assert run.violated() == {}


def test_a_partitions_checkpoint_looks_only_at_its_partition() -> None:
    """Partition 1's checkpoint at 7 is fine while partition 0's evidence 6 is still unhandled."""
    run = Run()
    for n in range(1, 8):
        run.replace_evidence(n, partition=0 if n == 6 else 1)
    run.ops = [op for op in run.ops if op.op != CHECKPOINT]
    early = run.ops.index(next(op for op in run.ops if op.op == HEAL))
    sample = Op(run.ops[early].time, "checker", CHECKPOINT, "info",
                {"projection": "risk", "partition": 1, "position": 7}, 0)  # fmt: skip
    # handled late: evidence 6's assessment was stored after every partition-1 effect
    run.final.effects = [
        dataclasses.replace(e, stored_at=e.stored_at if e.evidence != 6 else run.tick())
        for e in run.final.effects
    ]
    cutoff = max(e.stored_at for e in run.final.effects if e.evidence != 6)
    run.ops.append(dataclasses.replace(sample, time=cutoff, line=len(run.ops) + 1))
    assert run.violated() == {}
    later = {**sample.value, "partition": 0, "position": 6}
    run.ops.append(dataclasses.replace(sample, time=cutoff, line=len(run.ops) + 1, value=later))
    assert "covered evidence 6" in run.violated()["checkpoints"][0]


def test_the_history_file_round_trips(tmp_path: Path) -> None:
    """What the writer records, the reader reads back, hostile text included."""
    ticks = iter([1.0, 2.5])
    writer = HistoryWriter(tmp_path / "history.jsonl", clock=lambda: next(ticks))
    writer.record("p1", APPEND, "invoke", msg_id="m1", entity="t.<script>")
    writer.record("p1", APPEND, "info", msg_id="m1", error="timeout")
    writer.close()
    ops = read_history(tmp_path / "history.jsonl")
    assert ops == writer.ops
    assert [(op.time, op.type, op.line) for op in ops] == [(1.0, "invoke", 1), (2.5, "info", 2)]


@pytest.mark.parametrize(
    ("line", "words"),
    [
        (b"{not json", "line 2: not JSON"),
        (b"[1]", "line 2: not a JSON object"),
        (b'{"time": "x", "process": "p", "op": "o", "type": "ok"}', "'time' must be a number"),
        (b'{"time": true, "process": "p", "op": "o", "type": "ok"}', "'time' must be a number"),
        (b'{"time": 1, "process": 2, "op": "o", "type": "ok"}', "must be strings"),
        (b'{"time": 1, "process": "p", "op": "o", "type": "maybe"}', "'type' must be one of"),
        (b'{"time": 1, "process": "p", "op": "o", "type": "ok", "value": []}', "must be an object"),
    ],
)
def test_a_bad_history_line_is_named(line: bytes, words: str) -> None:
    """A history that is not one says which line and why."""
    good = b'{"time": 1, "process": "p", "op": "o", "type": "ok"}'
    with pytest.raises(HistoryError, match="line 2") as caught:
        parse_history([good, line, b""])
    assert words in str(caught.value)


def test_a_value_that_is_not_json_is_refused(tmp_path: Path) -> None:
    """Nothing half-written: a refused op leaves the file as it was."""
    writer = HistoryWriter(tmp_path / "history.jsonl")
    with pytest.raises(HistoryError, match="not JSON"):
        writer.record("p1", APPEND, "invoke", msg_id=object())
    with pytest.raises(HistoryError, match="op type"):
        writer.record("p1", APPEND, "maybe")  # type: ignore[arg-type]
    writer.close()
    assert read_history(tmp_path / "history.jsonl") == []


@pytest.mark.parametrize(
    ("deliveries", "faults", "verdict"), [(5, 0, "ok"), (6, 0, "violated"), (7, 1, "ok")]
)
def test_a_dead_letter_may_pass_max_deliver_only_by_what_faults_explain(
    deliveries: int, faults: int, verdict: str
) -> None:
    """A fault during its handling may cut its last delivery short; without one, no excuse."""
    run = Run()
    run.append("flaky", "c", sequence=8, expect="dead-letter")
    for _ in range(faults):
        run.op("nemesis", FAULT, "info", fault="pause-server", target="n1")
        run.op("nemesis", HEAL, "info", fault="pause-server", target="n1")
    run.effect("dead-letter", 2, 8, delivery_count=deliveries)
    violated = "bounded-redelivery" in run.violated()
    assert violated == (verdict == "violated"), run.violated()


@pytest.mark.parametrize(("faults", "verdict"), [(0, "violated"), (2, "violated"), (3, "ok")])
def test_flaky_evidence_may_end_a_dead_letter_only_when_faults_spent_its_spare_deliveries(
    faults: int, verdict: str
) -> None:
    """Failing 2 deliveries of 5 it must be assessed, unless 3 faults meanwhile used up the rest."""
    run = Run()
    run.op("p1", APPEND, "invoke", msg_id="flaky", entity="t.f", expect="assess", failures=2)
    run.final.evidence.append(StoredEvidence(8, "flaky", "t.f", run.tick(), 0))
    run.op("p1", APPEND, "ok", msg_id="flaky", sequence=8, duplicate=False)
    for _ in range(faults):
        run.op("nemesis", FAULT, "info", fault="kill-worker", target="w1")
        run.op("nemesis", HEAL, "info", fault="kill-worker", target="w1")
    run.effect("dead-letter", 2, 8, delivery_count=5)
    effects = {"exactly-one-assessment", "dead-letters-complete"}
    violated = run.violated()
    if verdict == "violated":
        assert effects <= set(violated), violated
    else:  # (the heals after the run's recovery are this test's doing, not a violation)
        assert not effects & set(violated), violated


def test_a_fault_already_in_effect_when_evidence_is_stored_counts_for_it() -> None:
    """A worker paused before the flaky evidence came, healed after: it explains a delivery."""
    run = Run()
    for n in range(3):
        run.op("nemesis", FAULT, "info", fault="pause-worker", target=f"w{n}")
    run.op("p1", APPEND, "invoke", msg_id="flaky", entity="t.f", expect="assess", failures=2)
    run.final.evidence.append(StoredEvidence(8, "flaky", "t.f", run.tick(), 0))
    run.op("p1", APPEND, "ok", msg_id="flaky", sequence=8, duplicate=False)
    for n in range(3):
        run.op("nemesis", HEAL, "info", fault="pause-worker", target=f"w{n}")
    run.effect("dead-letter", 2, 8, delivery_count=5)
    assert not {"exactly-one-assessment", "dead-letters-complete"} & set(run.violated())
