"""The idempotency key: an unambiguous function of (source, id)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.events import evidence

from eventstore import EventStore, msg_id_for

# What CloudEvent accepts for both: printable ASCII without whitespace, ':' included.
_part = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1)


def _split(key: str) -> tuple[str, str]:
    """Read a key back into its (source, id): the inverse the format promises."""
    length, _, rest = key.partition(":")
    source, colon, event_id = rest[: int(length)], rest[int(length)], rest[int(length) + 1 :]
    assert colon == ":"
    return source, event_id


@given(_part, _part)
def test_a_key_reads_back_into_the_one_pair_it_came_from(source: str, event_id: str) -> None:
    """Every key splits back into its own (source, id), so no two pairs can share one."""
    assert _split(msg_id_for(source, event_id)) == (source, event_id)


@given(_part, _part, _part, _part)
def test_distinct_pairs_never_share_a_key(a: str, b: str, c: str, d: str) -> None:
    """Two different (source, id) pairs always get different keys."""
    if (a, b) != (c, d):
        assert msg_id_for(a, b) != msg_id_for(c, d)


def test_the_key_is_documented_and_stable() -> None:
    """The format is the documented one: a producer outside Python can compute it."""
    assert msg_id_for("auth-service", "e1") == "12:auth-service:e1"
    assert evidence("b:c", source="svc").msg_id == "3:svc:b:c"
    assert evidence("c", source="svc:b").msg_id == "5:svc:b:c"


async def test_colons_cannot_make_one_event_shadow_another(store: EventStore) -> None:
    """Source svc, id b:c and source svc:b, id c are two events: both are stored."""
    first = await store.append(evidence("b:c", source="svc", severity="low"))
    second = await store.append(evidence("c", source="svc:b", severity="critical"))
    assert (first.duplicate, second.duplicate) == (False, False)
    stored = [(r.event.source, r.event.id) async for r in store.read("t1", "e1") if r.event]
    assert stored == [("svc", "b:c"), ("svc:b", "c")]


@pytest.mark.parametrize("key", ["", "3:svc:b:c", "7"])
async def test_a_raw_message_cannot_take_an_event_key(store: EventStore, key: str) -> None:
    """append_unchecked refuses keys that are empty or shaped like an event's."""
    with pytest.raises(ValueError, match=r"reserved for events"):
        await store.append_unchecked("evidence", "t1", "e1", b"{}", msg_id=key)
