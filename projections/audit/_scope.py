"""What an audit looks at: a tenant or one entity, and a range of evidence positions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from eventstore import validate_token
from projections.audit.errors import InvalidScopeError

if TYPE_CHECKING:
    from datetime import datetime

    from eventstore import Category, EventStore, StoreConfig

__all__ = ["ReplayScope", "first_stored_after"]


@dataclass(frozen=True, slots=True)
class ReplayScope:
    """Evidence of one tenant (or everyone's), or of one entity, between two stream sequences.

    ``until_seq=None`` means up to the last evidence stored when the audit starts.

    Raises:
        InvalidScopeError: an entity without a tenant, a bad token, or an empty range.
    """

    tenant: str | None = None
    entity: str | None = None
    from_seq: int = 1
    until_seq: int | None = None

    def __post_init__(self) -> None:
        if self.entity is not None and self.tenant is None:
            raise InvalidScopeError("an entity needs its tenant")
        try:
            for value, what in ((self.tenant, "tenant"), (self.entity, "entity")):
                if value is not None:
                    validate_token(value, what=what)
        except ValueError as exc:
            raise InvalidScopeError(str(exc)) from exc
        if self.from_seq < 1:
            raise InvalidScopeError(f"from_seq must be at least 1, not {self.from_seq}")
        if self.until_seq is not None and self.until_seq < self.from_seq:
            raise InvalidScopeError(
                f"until_seq {self.until_seq} is before from_seq {self.from_seq}: nothing to audit"
            )

    def subject_filter(self, config: StoreConfig, category: Category) -> str | None:
        """The subject filter of ``category`` for this scope; ``None``: the whole stream."""
        if self.tenant is None:
            return None
        if category != "evidence":
            return f"{config.prefix}.{category}.{self.tenant}.{self.entity or '>'}"
        if self.entity is not None:  # stored with its partition in front of the tenant
            return config.stored_subject(category, self.tenant, self.entity)
        return f"{config.prefix}.evidence.*.{self.tenant}.>"

    def audit_filter(self, config: StoreConfig) -> str | None:
        """The subject filter of operator actions for this scope; ``None``: the whole stream.

        A tenant's, even when scoped to one entity: an entity's actions sit on
        its audit subject and on subjects below it (one per replayed dead letter).
        """
        return None if self.tenant is None else f"{config.prefix}.audit.{self.tenant}.>"

    def dlq_filter(self, config: StoreConfig, projection: str) -> str:
        """The subject filter of ``projection``'s dead letters in this scope."""
        tail = f"{self.tenant}.{self.entity or '>'}" if self.tenant else ">"
        return f"{config.prefix}.dlq.{projection}.{tail}"

    def contains(self, sequence: int) -> bool:
        """Whether an evidence stream sequence is inside the range."""
        return self.from_seq <= sequence and (self.until_seq is None or sequence <= self.until_seq)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready."""
        return {
            "tenant": self.tenant,
            "entity": self.entity,
            "from_seq": self.from_seq,
            "until_seq": self.until_seq,
        }


async def first_stored_after(store: EventStore, when: datetime, *, inclusive: bool) -> int:
    """The first evidence sequence stored at (``inclusive``) or after ``when``.

    Stored times grow with the sequence, so a binary search over a handful of
    direct gets finds it. Past the last evidence it is ``last_seq + 1``.
    """
    stream = store.config.stream_for("evidence")
    state = await store.stream_state(stream)
    if not state["messages"]:
        return int(state["last_seq"]) + 1
    low, high = int(state["first_seq"]), int(state["last_seq"]) + 1
    everything = f"{store.config.prefix}.evidence.>"
    while low < high:
        middle = (low + high) // 2
        rec = await store.get(stream, middle, next_on_subject=everything)
        if rec is None:
            high = middle
            continue
        before = rec.stored_at < when if inclusive else rec.stored_at <= when
        if before:
            low = rec.sequence + 1
        else:
            high = middle
    return low
