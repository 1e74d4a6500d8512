"""Runtime tuning of the riskpipe commands."""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING

import pytest

from riskpipe.runtime import tune_gc

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def restored_gc() -> Iterator[None]:
    """Whatever a test sets, the rest of the session runs with the GC as it was."""
    threshold = gc.get_threshold()
    yield
    gc.set_threshold(*threshold)
    gc.unfreeze()


@pytest.mark.usefixtures("restored_gc")
def test_tune_gc_raises_the_young_threshold_and_freezes_startup_objects() -> None:
    """The young generation is collected less often; objects alive now are never scanned."""
    _, middle, old = gc.get_threshold()
    tune_gc(12_345)
    assert gc.get_threshold() == (12_345, middle, old)
    assert gc.get_freeze_count() > 0


@pytest.mark.usefixtures("restored_gc")
def test_tune_gc_zero_leaves_cpython_defaults() -> None:
    """0 opts out: thresholds unchanged and nothing frozen."""
    before = gc.get_threshold()
    frozen = gc.get_freeze_count()
    tune_gc(0)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen
