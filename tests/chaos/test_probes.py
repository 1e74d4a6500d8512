"""A chaos run's security probes: what would purge, expire or multiply evidence is refused."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import pytest

from riskpipe.chaos._harness import _PROBES, _evidence, _try

if TYPE_CHECKING:
    from eventstore import EventStore


@pytest.mark.parametrize(("name", "headers"), _PROBES, ids=[name for name, _ in _PROBES])
async def test_each_probe_is_refused_and_stores_nothing(
    store: EventStore, name: str, headers: dict[str, str]
) -> None:
    """By the store's API before sending, and by the stream when sent raw."""
    event = _evidence("probe", 1, random.Random(1), 5)  # noqa: S311 - test data
    assert await _try(store, event, headers) == "ok", name
    assert await store.count("EVIDENCE", "rp.evidence.>") == 0


async def test_a_header_the_stream_takes_is_reported(store: EventStore) -> None:
    """A probe must be able to fail: one the stream has no reason to refuse is ``fail``."""
    event = _evidence("probe", 2, random.Random(2), 5)  # noqa: S311 - test data
    assert await _try(store, event, {"X-Harmless": "1"}) == "fail"
