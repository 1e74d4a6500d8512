"""External signals: what an enricher adds to an assessment, and the enricher contract."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from analyzers._evidence import Evidence

__all__ = ["Enricher", "EnrichmentSignal"]


class EnrichmentSignal(BaseModel):
    """A risk modifier an external service gave for an entity.

    ``modifier`` is in [-1, 1]: positive moves the score towards 1, negative
    towards 0, 0 leaves it alone; the analyzer applies it only within its
    config's bounds, as nothing vouches for a service's answer. The assessment
    records the signal as answered, so an audit replay re-derives the same
    score without calling the service.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    provider: str = Field(min_length=1, max_length=64)
    modifier: float = Field(ge=-1.0, le=1.0)


class Enricher(Protocol):
    """Something that fetches an :class:`EnrichmentSignal` for an entity.

    The caller fetches the signal *before* calling :func:`analyzers.assess`,
    which stays pure. Implementations raise :class:`analyzers.errors.AnalyzerError`
    subclasses only: :class:`~analyzers.errors.DependencyUnavailable` when the
    dependency is known to be down, a
    :class:`~analyzers.errors.TransientAnalyzerError` when a later try may work.
    """

    async def enrich(self, tenant: str, entity: str, evidence: Evidence) -> EnrichmentSignal:
        """The signal for ``entity`` of ``tenant``, in the light of ``evidence``."""
        ...
