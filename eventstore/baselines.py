"""Raw nats-py baselines that benchmarks compare the store against."""

from eventstore._jetstream._baseline import raw_pipelined_publish

__all__ = ["raw_pipelined_publish"]
