"""``EventStore.retry_transient``: a request retried through an outage, for the election window."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
from support.proxy import nats_proxy

from eventstore import EventStore
from eventstore.errors import NotProvisionedError, TransientStoreError
from riskpipe.topology import topology_config
from riskpipe.wiring import build_schemas

if TYPE_CHECKING:
    from riskpipe.server import NatsServer


async def _connect(url: str, window: timedelta = timedelta(seconds=30)) -> EventStore:
    config = topology_config(election_window=window)
    return await EventStore.connect(url, schemas=build_schemas(), config=config, timeout=0.5)


@pytest.mark.usefixtures("store")
async def test_a_request_unanswered_for_a_while_is_retried_until_it_is_answered(
    nats_server: NatsServer,
) -> None:
    """Requests that get no answer are tried again; the first answered one is the result."""
    async with nats_proxy(nats_server.url) as proxy:
        store = await _connect(proxy.url)
        retries: list[int] = []
        answered = asyncio.Event()

        def retrying(error: TransientStoreError, attempt: int) -> None:
            assert isinstance(error, TransientStoreError)
            retries.append(attempt)
            if len(retries) == 2:
                proxy.blackholed = False  # the "election" is over
                answered.set()

        try:
            proxy.blackholed = True
            info = await store.retry_transient(
                lambda: store.client.stream_info("EVIDENCE"), on_retry=retrying
            )
        finally:
            proxy.blackholed = False  # a connection still blackholed would drain for seconds
            await store.close()
    assert answered.is_set()
    assert retries == [1, 2]
    assert info is not None
    assert info["config"]["name"] == "EVIDENCE"


@pytest.mark.usefixtures("store")
async def test_stop_ends_the_retries_at_once_and_other_errors_are_not_retried(
    nats_server: NatsServer,
) -> None:
    """With ``stop`` set meanwhile: ``None``. A missing consumer is raised at the first try."""
    async with nats_proxy(nats_server.url) as proxy:
        store = await _connect(proxy.url)
        stop = asyncio.Event()
        try:
            with pytest.raises(NotProvisionedError):
                await store.retry_transient(store.consumer("nobody").info, stop=stop)
            proxy.blackholed = True
            got = await store.retry_transient(
                lambda: store.client.stream_info("EVIDENCE"),
                on_retry=lambda _error, _attempt: stop.set(),
                stop=stop,
            )
        finally:
            proxy.blackholed = False  # a connection still blackholed would drain for seconds
            await store.close()
    assert got is None


@pytest.mark.usefixtures("store")
async def test_still_failing_after_the_window_raises_the_transient_error(
    nats_server: NatsServer,
) -> None:
    """With no window, the store's few attempts and then the time-out itself."""
    async with nats_proxy(nats_server.url) as proxy:
        store = await _connect(proxy.url, window=timedelta(0))
        store.retry_attempts = 2
        attempts: list[int] = []
        try:
            proxy.blackholed = True
            with pytest.raises(TransientStoreError):
                await store.retry_transient(
                    lambda: store.client.stream_info("EVIDENCE"),
                    on_retry=lambda _error, attempt: attempts.append(attempt),
                )
        finally:
            proxy.blackholed = False  # a connection still blackholed would drain for seconds
            await store.close()
    assert attempts == [1]
