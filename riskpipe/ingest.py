"""What a producer may append: one evidence event, checked as ``riskpipe publish`` checks a line.

``riskpipe publish`` and ``POST /api/evidence`` both take evidence from
outside and must refuse the same things with the same reasons, so the check
is here, once: a strict parse and validation of the event, then its type.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from analyzers import EVIDENCE_TYPES

if TYPE_CHECKING:
    from eventstore import CloudEvent, EventSchemas

__all__ = ["NotEvidenceError", "publishable"]


class NotEvidenceError(ValueError):
    """A line holds a valid event of a type producers may not publish."""

    def __init__(self, event_type: str) -> None:
        super().__init__(
            f"publish appends evidence ({' or '.join(EVIDENCE_TYPES)}) only, not {event_type}"
        )


def publishable(schemas: EventSchemas, line: bytes, *, max_bytes: int) -> CloudEvent:
    """The evidence event one line of a publish file holds: what ``riskpipe publish`` accepts.

    ``riskpipe schema --publish`` is the JSON Schema of exactly these lines.

    Raises:
        DecodeError: the line is not a valid event.
        NotEvidenceError: it is a valid event of a type producers may not publish.
    """
    event = schemas.parse(line, max_bytes=max_bytes)
    if event.type not in EVIDENCE_TYPES:
        # assessments, dead letters and audit records are written by riskpipe itself
        raise NotEvidenceError(event.type)
    return event
