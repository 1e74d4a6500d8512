"""The SQL read model in tests: its rows as plain tuples, and review events made up in code."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import select

from projections.readmodel import Database, Item, generation_tables
from projections.readmodel._generations import active_generation
from projections.review import (
    ASSIGNED,
    COMMENTED,
    DECIDED,
    OPENED,
    REOPENED,
    Actor,
    AssessmentRef,
    CaseAssignedData,
    CaseCommentedData,
    CaseDecidedData,
    CaseOpenedData,
    CaseReopenedData,
)
from support.events import BASE_TIME

if TYPE_CHECKING:
    from collections.abc import Callable

    from pydantic import BaseModel

__all__ = ["REVIEW_STREAM", "ReadModelProcess", "ReviewLog", "rows"]

REVIEW_STREAM = "REVIEW"
_REVIEWER = Actor(name="alice", role="reviewer")
_SYSTEM = Actor(name="review-policy", role="system")


async def rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the active generation, table by table, in key order.

    The tracking records without their time: two builds of the same log must
    be equal row for row, and they are built at different times.
    """
    db = Database(url)
    try:
        async with db.read() as conn:
            found = await active_generation(conn)
            assert found is not None, "no active generation"
            t = generation_tables(found.generation)
            dumped: dict[str, list[tuple[Any, ...]]] = {}
            for name, table in (
                ("assessments", t.assessments),
                ("dead_letters", t.dead_letters),
                ("cases", t.cases),
                ("decisions", t.decisions),
            ):
                result = await conn.execute(select(table).order_by(*table.primary_key.columns))
                dumped[name] = [tuple(row) for row in result]
            tracking = t.tracking.c
            result = await conn.execute(
                select(tracking.readmodel, tracking.stream, tracking.last_seq).order_by(
                    tracking.readmodel, tracking.stream
                )
            )
            dumped["tracking"] = [tuple(row) for row in result]
            return dumped
    finally:
        await db.dispose()


class ReviewLog:
    """Review events of made-up cases, numbered as a REVIEW stream would store them."""

    def __init__(self, prefix: str = "rp") -> None:
        self.prefix = prefix
        self.items: list[Item] = []

    def _add(self, type_: str, tenant: str, entity: str, data: BaseModel | None) -> Item:
        seq = len(self.items) + 1
        item = Item(
            stream=REVIEW_STREAM,
            sequence=seq,
            subject=f"{self.prefix}.review.{tenant}.{entity}",
            type=type_ if data is not None else None,
            tenant=tenant if data is not None else None,
            entity=entity if data is not None else None,
            time=BASE_TIME + timedelta(minutes=seq) if data is not None else None,
            data=data,
        )
        self.items.append(item)
        return item

    def opened(  # noqa: PLR0913 - a test builder with a default for everything
        self,
        tenant: str,
        entity: str,
        case: int,
        *,
        level: str = "high",
        score: float = 0.8,
        triggers: tuple[str, ...] = ("level",),
    ) -> Item:
        """A case opened by the review policy on an assessment."""
        ref = AssessmentRef.model_validate(
            {"stream": "RISK", "sequence": len(self.items) + 1, "level": level,
             "score": score, "confidence": 0.9}
        )  # fmt: skip
        data = CaseOpenedData.model_validate(
            {"case": case, "triggers": triggers, "assessment": ref, "policy_version": "1",
             "by": _SYSTEM}
        )  # fmt: skip
        return self._add(OPENED, tenant, entity, data)

    def assigned(self, tenant: str, entity: str, case: int, assignee: str | None) -> Item:
        """A case taken by (or given to) ``assignee``; ``None`` unassigns."""
        data = CaseAssignedData(case=case, assignee=assignee, by=_REVIEWER)
        return self._add(ASSIGNED, tenant, entity, data)

    def commented(self, tenant: str, entity: str, case: int) -> Item:
        """A note on the case."""
        data = CaseCommentedData(case=case, text="looked at it", by=_REVIEWER)
        return self._add(COMMENTED, tenant, entity, data)

    def decided(
        self,
        tenant: str,
        entity: str,
        case: int,
        outcome: str = "confirmed",
        level: str | None = None,
    ) -> Item:
        """A case closed with ``outcome``."""
        data = CaseDecidedData.model_validate(
            {"case": case, "outcome": outcome, "level": level, "reason": "checked",
             "by": _REVIEWER}
        )  # fmt: skip
        return self._add(DECIDED, tenant, entity, data)

    def reopened(self, tenant: str, entity: str, case: int) -> Item:
        """A decided case open again."""
        data = CaseReopenedData(case=case, reason="new evidence", by=_REVIEWER)
        return self._add(REOPENED, tenant, entity, data)

    def foreign(self, tenant: str, entity: str) -> Item:
        """A message on the entity's review subject that is not a valid event."""
        return self._add("", tenant, entity, None)


class ReadModelProcess:
    """A ``riskpipe readmodel run`` in its own process, owned by PID, its log lines collected."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("RISKPIPE_")}
        self.env = {**clean, "RISKPIPE_LOG_FORMAT": "json", **env}
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.lines: list[dict[str, Any]] = []
        self._logged = threading.Condition()
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        """Start ``riskpipe readmodel run ARGS`` (``--no-http`` unless ARGS name a port)."""
        http = [] if any(a.startswith("--http-port") for a in self.args) else ["--no-http"]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "riskpipe", "readmodel", "run", *http, *self.args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._reader.start()

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        with proc.stderr:
            for raw in proc.stderr:
                try:
                    line = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    line = {"event": raw.decode("utf-8", "replace").rstrip()}
                with self._logged:
                    self.lines.append(line)
                    self._logged.notify_all()

    def wait_for(
        self, name: str, match: Callable[[dict[str, Any]], bool] = lambda _: True
    ) -> dict[str, Any]:
        """The first log line ``name`` that ``match`` accepts, once the process wrote it.

        Raises:
            AssertionError: the process exited, or 60 s passed, without writing it.
        """

        def found() -> dict[str, Any] | None:
            return next((x for x in self.lines if x.get("event") == name and match(x)), None)

        with self._logged:
            ended = lambda: self.proc is not None and self.proc.poll() is not None  # noqa: E731
            self._logged.wait_for(lambda: found() is not None or ended(), timeout=60)
            line = found()
        if line is None:
            tail = "\n".join(str(x) for x in self.lines[-15:])
            raise AssertionError(f"no {name} line; last lines:\n{tail}")
        return line

    def stop(self) -> int:
        """SIGTERM, and the exit status once it has stopped."""
        assert self.proc is not None
        self.proc.terminate()
        code = self.proc.wait(30)
        if self._reader is not None:
            self._reader.join(5)
        return code

    def kill(self) -> int:
        """SIGKILL, as a crash would; the exit status."""
        assert self.proc is not None
        self.proc.kill()
        code = self.proc.wait(30)
        if self._reader is not None:
            self._reader.join(5)
        return code
