"""A dead letter is replayed once: a second replay is refused, a second later or a month later."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from support.nats import raw_publish
from support.pipeline import read_streams, run_worker

from eventstore import EventStore
from projections import DLQ_REPLAYED, DeadLetter, DeadLetterQueue, ReplayRefusedError

if TYPE_CHECKING:
    from riskpipe.server import NatsServer


async def _dead_letter(store: EventStore, url: str) -> int:
    """One dead letter (malformed bytes), made by a real worker; its DLQ sequence."""
    await store.append_unchecked("evidence", "t1", "e1", b"{broken", msg_id="poison:1")
    await run_worker(store, url)
    (letter,) = await DeadLetterQueue(store, "risk").list()
    return letter.sequence


async def _evidence_count(store: EventStore) -> int:
    return await store.count("EVIDENCE", "rp.evidence.>")


async def _shorten_duplicate_window(store: EventStore, seconds: float) -> None:
    """Make the evidence stream forget message ids after ``seconds``, as if a month passed."""
    info = await store.client.stream_info("EVIDENCE")
    assert info is not None
    config = {**info["config"], "duplicate_window": int(seconds * 1e9)}
    await store.client.api("STREAM.UPDATE.EVIDENCE", config)


async def test_a_second_replay_is_refused_with_what_happened(
    nats_server: NatsServer, store: EventStore
) -> None:
    """Replaying a dead letter again is refused, naming the evidence it was replayed as."""
    seq = await _dead_letter(store, nats_server.url)
    queue = DeadLetterQueue(store, "risk")
    new_seq = await queue.replay(seq, actor="alice", reason="fixed")
    with pytest.raises(ReplayRefusedError, match=f"evidence sequence {new_seq}.*alice"):
        await queue.replay(seq, actor="bob")
    assert await _evidence_count(store) == 2
    replays = [
        rec.event
        async for rec in store.read_all(stream="AUDIT")
        if rec.event is not None and rec.event.type == DLQ_REPLAYED
    ]
    assert [(e.data or {})["actor"] for e in replays] == ["alice"]


async def test_a_replay_long_after_the_duplicate_window_is_still_refused(
    nats_server: NatsServer, store: EventStore
) -> None:
    """Once the server has forgotten the replay's message id, the record still refuses a second."""
    seq = await _dead_letter(store, nats_server.url)
    queue = DeadLetterQueue(store, "risk")
    await queue.replay(seq, actor="alice")
    await _shorten_duplicate_window(store, 0.1)
    await asyncio.sleep(0.3)  # not synchronisation: the window has to pass
    with pytest.raises(ReplayRefusedError):
        await queue.replay(seq, actor="alice")
    await run_worker(store, nats_server.url)
    streams = await read_streams(store)
    assert await _evidence_count(store) == 2
    assert len(streams.assessments) == 0, "the replayed bytes are still broken: dead-lettered"


async def test_two_replays_racing_send_the_evidence_once(
    nats_server: NatsServer, store: EventStore
) -> None:
    """Of two operators replaying the same dead letter at once, one wins and one is refused."""
    seq = await _dead_letter(store, nats_server.url)
    async with await EventStore.connect(
        nats_server.url, schemas=store.schemas, config=store.config
    ) as other:
        outcomes = await asyncio.gather(
            DeadLetterQueue(store, "risk").replay(seq, actor="alice"),
            DeadLetterQueue(other, "risk").replay(seq, actor="bob"),
            return_exceptions=True,
        )
    refused = [o for o in outcomes if isinstance(o, ReplayRefusedError)]
    assert len(refused) == 1, outcomes
    assert await _evidence_count(store) == 2


async def _claimed_then_killed(queue: DeadLetterQueue, seq: int) -> DeadLetter:
    """The dead letter at ``seq``, its replay claimed by a process that then died."""
    letter = await queue.get(seq)
    trail = queue._trail(letter)  # noqa: SLF001 - stopping a replay half-way, as a crash would
    await queue._claim(letter, trail, None, floor=1, actor="alice", reason="", attempt="a1")  # noqa: SLF001
    return letter


async def test_a_replay_that_died_after_resending_is_finished_without_a_second_copy(
    nats_server: NatsServer, store: EventStore
) -> None:
    """A replay killed between re-sending and recording is finished by the next, sending nothing."""
    seq = await _dead_letter(store, nats_server.url)
    queue = DeadLetterQueue(store, "risk")
    letter = await _claimed_then_killed(queue, seq)
    sent = await queue._resend(letter, 1)  # noqa: SLF001
    await _shorten_duplicate_window(store, 0.1)
    await asyncio.sleep(0.3)  # not synchronisation: the window has to pass
    assert await queue.replay(seq, actor="bob") == sent
    assert await _evidence_count(store) == 2
    assert (await queue.get(seq)).replayed_as == sent


async def test_a_replay_that_died_after_its_claim_is_finished_by_the_next(
    nats_server: NatsServer, store: EventStore
) -> None:
    """A replay killed right after its claim does not block the dead letter: the next sends it."""
    seq = await _dead_letter(store, nats_server.url)
    queue = DeadLetterQueue(store, "risk")
    await _claimed_then_killed(queue, seq)
    new_seq = await queue.replay(seq, actor="bob")
    assert new_seq == 2
    assert await _evidence_count(store) == 2
    with pytest.raises(ReplayRefusedError):
        await queue.replay(seq, actor="carol")


@pytest.mark.parametrize("name", ["a.b", "risk.>", "*", "two words", ""])
def test_a_projection_name_that_is_not_a_token_is_refused(store: EventStore, name: str) -> None:
    """A projection name becomes part of subjects: wildcards and dots are refused up front."""
    with pytest.raises(ValueError, match="invalid projection"):
        DeadLetterQueue(store, name)


async def test_a_dead_letter_whose_headers_the_store_refuses_still_replays(
    nats_server: NatsServer, store: EventStore
) -> None:
    """Header names the store would not write itself (bad names) are re-sent as they came."""
    block = b"NATS/1.0\r\nBad@Name: x\r\nX-Kept: y\r\n"
    await raw_publish(nats_server.url, "rp.evidence.t1.e1", block, b"{broken")
    await run_worker(store, nats_server.url)
    (letter,) = await DeadLetterQueue(store, "risk").list()
    assert "Bad@Name" in letter.data.original_headers
    new_seq = await DeadLetterQueue(store, "risk").replay(letter.sequence, actor="alice")
    replayed = await store.get("EVIDENCE", new_seq)
    assert replayed is not None
    assert (replayed.headers.get("X-Kept"), replayed.headers.get("Bad@Name")) == ("y", "x")
