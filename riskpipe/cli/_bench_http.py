"""``riskpipe bench ingest --via http``: evidence posted to ``POST /api/evidence`` in batches.

The API app is served on loopback in the benchmark's own process and event
loop, with a producer token of every tenant; one client posts batches of
:data:`BATCH` events (JSON arrays, encoded before the clock starts), one
request at a time, and times each from the client. The CPU time per event
is therefore the API's and the HTTP client's together.
"""

from __future__ import annotations

import hashlib
import secrets
import statistics
import time
from typing import TYPE_CHECKING, Self

import click
import httpx
import orjson
from prometheus_client import CollectorRegistry

from riskpipe.api import TokenEntry, TokenTable, create_app
from riskpipe.bench import Sample, timed
from riskpipe.demo import synthetic_evidence
from riskpipe.http import AppServer

if TYPE_CHECKING:
    from types import TracebackType

    from eventstore import EventStore

__all__ = ["BATCH", "HttpIngest"]

BATCH = 500
"""Events per request."""


class HttpIngest:
    """The API on loopback, and a client that posts evidence to it and times each request."""

    def __init__(self, store: EventStore) -> None:
        self._token = secrets.token_urlsafe(24)
        digest = hashlib.sha256(self._token.encode()).hexdigest()
        table = TokenTable(
            [TokenEntry(name="bench", role="producer", tenants=("*",), token_sha256=digest)]
        )
        app = create_app(store=store, tokens=table, registry=CollectorRegistry())
        self._server = AppServer(app, host="127.0.0.1", port=0)
        self._http: httpx.AsyncClient | None = None
        self.seconds: list[float] = []
        """Each counted request's time, from the client."""

    async def __aenter__(self) -> Self:
        await self._server.start()
        self._http = httpx.AsyncClient(
            base_url=f"http://{self._server.host}:{self._server.port}",
            headers={
                "Authorization": f"Bearer {self._token}",
                "Content-Type": "application/json",
            },
            timeout=60.0,
        )
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._http is not None:
            await self._http.aclose()
        await self._server.stop()

    async def run(self, count: int, entities: int, run: int) -> Sample:
        """Post ``count`` new events in batches; the rate and CPU per event (run 0 not kept).

        Raises:
            click.ClickException: a request failed, or an event was not stored.
        """
        events = synthetic_evidence(count, source=f"bench-http-{run}", entities=entities)
        bodies = [
            orjson.dumps([e.to_json_dict() for e in events[at : at + BATCH]])
            for at in range(0, count, BATCH)
        ]
        seconds: list[float] = []

        async def post_all() -> None:
            seconds.extend([await self._post(body) for body in bodies])

        sample = await timed(count, post_all)
        if run:
            self.seconds.extend(seconds)
        return sample

    async def _post(self, body: bytes) -> float:
        """Post one batch; its time.

        Raises:
            click.ClickException: not 200, or an event not stored.
        """
        assert self._http is not None  # noqa: S101 - entered
        started = time.perf_counter()
        response = await self._http.post("/api/evidence", content=body)
        took = time.perf_counter() - started
        if response.status_code != 200:  # noqa: PLR2004 - the one answer expected
            raise click.ClickException(
                f"POST /api/evidence: {response.status_code} {response.text}"
            )
        stored = response.json()["stored"]
        if stored != body.count(b'"specversion"'):
            raise click.ClickException(f"POST /api/evidence stored {stored}: {response.text[:500]}")
        return took

    def percentile_ms(self, q: int) -> float:
        """The ``q``-th percentile of the counted requests' times, in milliseconds."""
        if len(self.seconds) < 2:  # noqa: PLR2004 - quantiles needs two
            return round(self.seconds[0] * 1000, 2) if self.seconds else 0.0
        cuts = statistics.quantiles(self.seconds, n=100, method="inclusive")
        return round(cuts[q - 1] * 1000, 2)
