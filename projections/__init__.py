"""The checkpointed projection runtime and the risk projection."""

__all__: list[str] = []
