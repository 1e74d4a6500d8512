"""Raw nats-py baselines that benchmarks compare the store against."""

from eventstore._jetstream._baseline import (
    raw_ordered_read,
    raw_pipelined_publish,
    raw_projection_loop,
    raw_pull_read,
)

__all__ = ["raw_ordered_read", "raw_pipelined_publish", "raw_projection_loop", "raw_pull_read"]
