"""The streams the projection runtime writes itself: dead letters and the audit of them."""

from __future__ import annotations

from eventstore import StreamSpec

__all__ = ["AUDIT_STREAM", "DLQ_STREAM", "RUNTIME_STREAMS"]

DLQ_STREAM = StreamSpec(category="dlq", name="DLQ", immutable=False, payload_factor=2)
"""Dead letters: ``<prefix>.dlq.<projection>.<tenant>.<entity>``. Purging is an operator's
right, so the stream allows it; a dead letter carries the original bytes base64-encoded."""
AUDIT_STREAM = StreamSpec(category="audit", name="AUDIT", payload_factor=2)
"""What operators did to dead letters (replayed, purged): immutable."""
RUNTIME_STREAMS = (DLQ_STREAM, AUDIT_STREAM)
