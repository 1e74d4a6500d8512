"""The transport boundary: a verified fast path, exact frames, a working fallback, undone hooks."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nats.aio.client
import pytest
import structlog
from hypothesis import given, reject, settings
from hypothesis import strategies as st
from support.events import evidence
from support.pipeline import read_streams, run_worker
from support.proxy import nats_proxy

from eventstore import EventStore
from eventstore._append import caller_headers
from eventstore._jetstream._inline import parse_headers
from eventstore._jetstream._transport import (
    VERIFIED,
    FastTransport,
    OutboundMessage,
    Transport,
    fast_path_problem,
    frame,
    select_transport,
)
from eventstore._jetstream._transport import _block as header_block_of
from eventstore.errors import InvalidHeaderError, MessageTooLargeError, TransientStoreError
from riskpipe.topology import topology_config
from riskpipe.wiring import build_schemas

if TYPE_CHECKING:
    from collections.abc import Iterator

    from riskpipe.server import NatsServer

MESSAGES = [
    OutboundMessage("t.plain", b"no headers, no reply", {}),
    OutboundMessage("t.one", b'{"id":"1"}', {"Nats-Msg-Id": "src:1"}),
    OutboundMessage(
        "t.many",
        b"",
        {"Nats-Msg-Id": "svc:b:c", "traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"},
    ),
]
REPLIES = [b"", b"_INBOX.x.1", b"_INBOX.x.2"]


async def _connect(url: str) -> nats.aio.client.Client:
    nc = nats.aio.client.Client()
    await nc.connect(servers=[url], allow_reconnect=False)
    return nc


async def _sent_after(proxy: Any, nc: nats.aio.client.Client, mark: int) -> bytes:
    """What the client sent through the proxy since ``mark``, without the PINGs of flushes.

    nats-py writes a flush's PING ahead of its buffer: only the second PING's
    PONG says that the proxy has everything buffered before the first.
    """
    await nc.flush()
    await nc.flush()
    sent = bytes(proxy.sent[mark:])
    assert sent.count(b"PING\r\n") == 2
    return sent.replace(b"PING\r\n", b"")


async def test_fast_frames_are_byte_equal_to_what_publish_sends(nats_server: NatsServer) -> None:
    """The frames the fast path writes reach the server byte for byte as nc.publish's do."""
    async with nats_proxy(nats_server.url) as proxy:
        nc = await _connect(proxy.url)
        try:
            fast = FastTransport(nc)
            mark = len(proxy.sent)
            for message, reply in zip(MESSAGES, REPLIES, strict=True):
                assert fast.buffer(message, reply)
            await fast.flush()
            fast_bytes = await _sent_after(proxy, nc, mark)
            mark = len(proxy.sent)
            for (subject, payload, headers), reply in zip(MESSAGES, REPLIES, strict=True):
                await nc.publish(subject, payload, reply=reply.decode(), headers=headers or None)
            public_bytes = await _sent_after(proxy, nc, mark)
            fast.close()
        finally:
            await nc.close()
    assert fast_bytes == public_bytes
    assert fast_bytes.count(b"HPUB ") == 2
    assert fast_bytes.startswith(b"PUB t.plain ")


@pytest.fixture
def every_log_level() -> Iterator[None]:
    """Warnings reach capture_logs whatever level an earlier test configured."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        yield
    finally:
        structlog.configure(**saved)


@pytest.mark.usefixtures("every_log_level")
async def test_the_verified_client_passes_and_a_changed_one_does_not(
    nats_server: NatsServer,
) -> None:
    """A renamed private attribute, or another nats-py version, turns the fast path off."""
    nc = await _connect(nats_server.url)
    try:
        assert fast_path_problem(nc) is None
        assert "2.17" in str(fast_path_problem(nc, version=(2, 17)))
        assert "outside the verified range" in str(fast_path_problem(nc, version=(2, 15)))
        size = nc._pending_data_size  # noqa: SLF001 - what a rename would take away
        del nc._pending_data_size  # noqa: SLF001
        try:
            assert "_pending_data_size" in str(fast_path_problem(nc))
            with structlog.testing.capture_logs() as logs:
                chosen = select_transport(nc)
        finally:
            nc._pending_data_size = size  # noqa: SLF001
        assert type(chosen) is Transport
        assert [entry["event"] for entry in logs] == ["nats.fast_path_off"]
        assert "_pending_data_size" in logs[0]["reason"]
        assert "_process_msg" not in vars(nc), "the public transport hooks nothing"
    finally:
        await nc.close()


async def test_the_public_api_path_works_end_to_end(nats_server: NatsServer) -> None:
    """Forced onto nats-py's public API, the store appends, reads, consumes and dead-letters."""
    nc = await _connect(nats_server.url)
    try:
        store = await EventStore.from_client(
            nc, schemas=build_schemas(), config=topology_config(), fast_path=False
        )
        assert not store.client.transport.fast
        assert "_process_msg" not in vars(nc)
        await store.provision()
        one = await store.append(evidence("p1"))
        assert (one.sequence, one.duplicate) == (1, False)
        assert (await store.append(evidence("p1"))).duplicate
        many = await store.append_many([evidence(f"m{i}", minute=i) for i in range(300)])
        assert [r.sequence for r in many if not isinstance(r, Exception)] == list(range(2, 302))
        assert store.append_soon(evidence("later")) is None, "no write without a coroutine"
        await store.append_unchecked("evidence", "t1", "e1", b"{not json", msg_id="poison")
        assert len([r async for r in store.read_all()]) == 302
        worker = await run_worker(store, nats_server.url)
        streams = await read_streams(store)
        assert worker.outcomes == {"assessed": 301, "dead_lettered": 1}
        assert len(streams.assessments) == 301
        assert len(streams.dead_letters) == 1
        await store.close()
        assert nc.is_connected, "the caller's client stays open"
    finally:
        await nc.close()


@pytest.mark.parametrize(
    "headers",
    [
        {"Nats-Msg-Id": "a:b"},
        {"Status": "503"},
        {"Status": "404", "Description": "No Messages"},
        {"Status": "100", "Description": "Idle Heartbeat", "Nats-Last-Stream": "7"},
    ],
)
def test_the_public_path_hands_handlers_the_headers_it_received(headers: dict[str, str]) -> None:
    """Headers nats-py parsed, statuses included, reach inline handlers as the same block."""
    assert parse_headers(header_block_of(headers)) == headers


async def test_closing_a_store_unhooks_the_callers_client(nats_server: NatsServer) -> None:
    """from_client hooks the caller's client only while the store is open."""
    nc = await _connect(nats_server.url)
    try:
        before = nc._process_msg  # noqa: SLF001 - the hook under test
        store = await EventStore.from_client(nc, schemas=build_schemas(), config=topology_config())
        assert store.client.transport.fast
        assert "_process_msg" in vars(nc)
        await store.close()
        assert "_process_msg" not in vars(nc)
        assert nc._process_msg == before  # noqa: SLF001
        got: asyncio.Queue[bytes] = asyncio.Queue()

        async def on_msg(msg: nats.aio.client.Msg) -> None:
            await got.put(msg.data)

        await nc.subscribe("after.close", cb=on_msg)
        await nc.publish("after.close", b"still works")
        assert await asyncio.wait_for(got.get(), 5) == b"still works"
    finally:
        await nc.close()


async def test_a_message_over_max_payload_is_refused_before_it_is_written(
    nats_server: NatsServer,
) -> None:
    """Headers plus payload over the server's max_payload: a typed error, the connection lives."""
    config = topology_config(max_payload_bytes=4 * 1024 * 1024)
    store = await EventStore.connect(nats_server.url, schemas=build_schemas(), config=config)
    try:
        await store.provision()
        limit = store.client.max_payload
        # nats-py's own check sees only the payload, which is just under the limit
        payload = b"x" * (limit - 10)
        with pytest.raises(MessageTooLargeError, match="max_payload"):
            await store.append_unchecked("evidence", "t1", "e1", payload, msg_id="big")
        publisher = store.client.publisher
        big = OutboundMessage("rp.evidence.t1.e1", payload, {"Nats-Msg-Id": "big"})
        assert publisher.publish_nowait(big) is None
        small = OutboundMessage("rp.evidence.t1.e1", b"{}", {"Nats-Msg-Id": "small"})
        refused, stored = await publisher.publish_many([big, small])
        with pytest.raises(MessageTooLargeError):
            await refused
        assert (await stored) is not None
        (result,) = await store.append_many([evidence("after-big")])
        assert not isinstance(result, Exception)
        assert store.client.connected
        assert not store.client.closed
        assert store.payload_limit("dlq") < limit
    finally:
        await store.close()


async def test_close_after_the_server_closed_the_connection(nats_server: NatsServer) -> None:
    """A connection the server closed for good: appends fail transiently, close() is quiet."""
    loop = asyncio.get_running_loop()
    unretrieved: list[str] = []
    loop.set_exception_handler(lambda _loop, ctx: unretrieved.append(ctx["message"]))
    async with nats_proxy(nats_server.url) as proxy:
        store = await EventStore.connect(
            proxy.url, schemas=build_schemas(), config=topology_config(), timeout=1.0
        )
        store.retry_attempts = 2
        await store.provision()
        async with asyncio.timeout(10):
            await proxy.server_error("Unknown Protocol Operation")
        assert store.client.closed
        assert "unknown protocol operation" in store.client.closed_reason
        with pytest.raises(TransientStoreError):
            await store.append(evidence("lost"))
        assert store.append_soon(evidence("lost")) is None
        await store.close()
    gc.collect()
    await asyncio.sleep(0)
    loop.set_exception_handler(None)
    assert unretrieved == []


def test_the_dependency_range_is_the_verified_range() -> None:
    """pyproject.toml admits exactly the nats-py versions the fast path was verified against."""
    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    (spec,) = [d for d in project["project"]["dependencies"] if d.startswith("nats-py")]
    (low_major, low_minor), (high_major, high_minor) = VERIFIED
    assert spec == f"nats-py>={low_major}.{low_minor},<{high_major}.{high_minor}"


async def test_close_while_the_server_is_down_with_frames_buffered(
    nats_server: NatsServer,
) -> None:
    """The server is gone, publishes wait in the client's buffer: close() still does not raise."""
    store = await EventStore.connect(
        nats_server.url, schemas=build_schemas(), config=topology_config(), timeout=1.0
    )
    await store.provision()
    nats_server.kill()
    async with asyncio.timeout(10):
        # nats-py notices the lost socket in its read loop; it offers nothing to await
        while store.client.connected:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    await store.client.publisher.send(OutboundMessage("rp.evidence.t1.e1", b"{}", {}))
    assert store.client.nc.pending_data_size > 0
    await store.close()
    assert store.client.closed


@pytest.mark.parametrize("pause", [0.0, 0.05, 0.3])
async def test_close_before_the_client_noticed_the_server_died(
    nats_server: NatsServer, pause: float
) -> None:
    """Killed between two loop turns: the socket is lost, the client still says connected.

    Closing then drains over a lost socket, which on Python 3.12+ raises
    ``TypeError`` from asyncio's transport; close() must still close, quietly.
    """
    store = await EventStore.connect(
        nats_server.url, schemas=build_schemas(), config=topology_config(), timeout=1.0
    )
    await store.provision()
    nats_server.kill()
    # blocks the loop on purpose: the lost socket is seen only inside close()
    time.sleep(pause)  # noqa: ASYNC251
    assert store.client.connected
    await store.close()
    assert store.client.closed


_NAME_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_names = st.text(_NAME_CHARS, min_size=1, max_size=20).filter(
    lambda name: not name.lower().startswith("nats-")
)
_values = st.text(st.characters(blacklist_characters="\r\n\0"), max_size=40)


@settings(max_examples=200, deadline=None)
@given(
    subject=st.from_regex(r"[a-z0-9_-]{1,10}(\.[a-z0-9_-]{1,10}){0,4}", fullmatch=True),
    reply=st.sampled_from(["", "_INBOX.abc.1f"]),
    headers=st.dictionaries(_names, _values, max_size=4),
    msg_id=st.none() | st.from_regex(r"[a-z]{1,8}:[A-Za-z0-9:._-]{1,16}", fullmatch=True),
    payload=st.binary(max_size=64),
)
def test_fast_frames_equal_publish_for_every_header_the_store_accepts(
    subject: str, reply: str, headers: dict[str, str], msg_id: str | None, payload: bytes
) -> None:
    """For any headers the store lets through, a fast frame is the bytes nc.publish buffers."""
    try:
        checked = caller_headers(headers)
    except InvalidHeaderError:
        reject()  # not sent at all: nothing to compare
    if msg_id is not None:
        checked["Nats-Msg-Id"] = msg_id

    async def publish() -> bytes:
        nc = nats.aio.client.Client()
        nc._max_pending_size = 1 << 20  # noqa: SLF001 - buffer without a server
        await nc.publish(subject, payload, reply=reply, headers=checked or None)
        (written,) = nc._pending  # noqa: SLF001 - exactly what it would send
        return written

    fast = frame(subject, reply.encode(), checked, payload, 1 << 20)
    assert fast == asyncio.run(publish())
