"""The streams riskpipe keeps: which categories of events exist and where each is stored.

Adding a kind of event that lives in its own stream is one line here (and
its types in :func:`riskpipe.wiring.build_schemas`): the event store knows
streams by their spec, not by name.
"""

from __future__ import annotations

from typing import Any

from eventstore import StoreConfig
from projections import RUNTIME_STREAMS
from projections.learning import CONFIGS_STREAM, OUTCOMES_STREAM
from projections.review import REVIEW_STREAM
from projections.risk import EVIDENCE_STREAM, RISK_STREAM
from projections.shadow import SHADOW_STREAM

__all__ = ["STREAMS", "topology_config"]

STREAMS = (
    EVIDENCE_STREAM,
    RISK_STREAM,
    *RUNTIME_STREAMS,
    REVIEW_STREAM,
    OUTCOMES_STREAM,
    CONFIGS_STREAM,
    SHADOW_STREAM,
)
"""Evidence first: the default stream of reads and consumers, and the partitioned one."""


def topology_config(**fields: Any) -> StoreConfig:  # noqa: ANN401 - StoreConfig's own fields
    """A :class:`StoreConfig` with riskpipe's streams and the given settings.

    Raises:
        pydantic.ValidationError: a setting is invalid.
    """
    return StoreConfig(streams=STREAMS, **fields)
