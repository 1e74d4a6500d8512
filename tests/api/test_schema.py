"""schemathesis against ``riskpipe api`` on real NATS: no 5xx, every response as documented."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from support.api import ApiProcess, make_dead_letters, make_tokens
from support.events import evidence

from eventstore import EventStore
from riskpipe.server import NatsServer
from riskpipe.topology import topology_config
from riskpipe.wiring import build_schemas

if TYPE_CHECKING:
    from collections.abc import Iterator

MAX_EXAMPLES = 25
"""Examples per operation: enough to reach every status, few enough to stay quick."""
EVIDENCE = "/api/evidence"
"""Posted with a producer's token: an admin's may not record evidence."""


async def _prepare(url: str) -> None:
    """Provision the store and leave dead letters and open cases of two tenants in it."""
    store = await EventStore.connect(url, schemas=build_schemas(), config=topology_config())
    try:
        await store.provision()
        for tenant in ("acme", "globex"):
            for n in range(4):
                await store.append(
                    evidence(f"r{n}", tenant=tenant, entity="e1", severity="critical")
                )
        await make_dead_letters(store, url)  # its worker run opens the cases too
    finally:
        await store.close()


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """``riskpipe api`` on a server of its own; an admin's and a producer's token, every tenant."""
    root = tmp_path_factory.mktemp("schema")
    server = NatsServer(data_dir=root / "nats")
    server.start()
    api: ApiProcess | None = None
    try:
        asyncio.run(_prepare(server.url))
        tokens = make_tokens(root / "tokens.yaml")
        api = ApiProcess(server.url, tokens.path)
        yield api.url, tokens.plain["admin", "*"], tokens.plain["producer", "*"]
    finally:
        if api is not None:
            api.stop()
        server.kill()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_api_keeps_to_its_schema(live_api: tuple[str, str, str], mode: GenerationMode) -> None:
    """Generated requests, valid and not, get documented statuses, bodies and content types.

    Every operation of the live server's own ``/openapi.json``, with schemathesis'
    checks: no 5xx, the status, content type, headers and body as documented, a
    valid request accepted, an invalid one refused, and a request without the
    token refused. Evidence is posted with a producer's token, everything
    else is called with an admin's.
    """
    url, admin, producer = live_api
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    assert len(list(schema.get_all_operations())) == 14  # status, whoami, 4 + 7 + evidence
    for part, token in (
        (schema.exclude(path=EVIDENCE), admin),
        (schema.include(path=EVIDENCE), producer),
    ):
        _conforms(part, mode, token)


def _conforms(schema: Any, mode: GenerationMode, token: str) -> None:
    """Every operation of ``schema`` keeps to it, called with ``token``."""
    operations = len(list(schema.get_all_operations()))

    @given(case=schema.as_strategy(mode))
    @settings(
        max_examples=MAX_EXAMPLES * operations,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def conforms(case: Any) -> None:
        case.call_and_validate(headers={"Authorization": f"Bearer {token}"})

    conforms()
