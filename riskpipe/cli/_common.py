"""Helpers shared by commands: running coroutines, mapping errors, consoles."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, NoReturn, TypeVar

import click
import structlog
from rich.console import Console
from rich.table import Table
from rich.text import Text

from eventstore import validate_token
from eventstore.errors import EventStoreError, NotProvisionedError, StoreUnavailableError
from riskpipe.wiring import connect_store

if TYPE_CHECKING:
    from collections.abc import Coroutine, Iterable

    from eventstore import Category, EventStore
    from riskpipe.bench import Measurement
    from riskpipe.settings import Settings

__all__ = [
    "ID_COLUMNS",
    "TIME",
    "add_columns",
    "connect_provisioned",
    "err_console",
    "fail",
    "measurement_table",
    "out_console",
    "plain",
    "run",
    "store_error",
]

T = TypeVar("T")
_CATEGORIES: tuple[Category, ...] = ("evidence", "risk", "dlq", "audit")
_log = structlog.get_logger("riskpipe")


def out_console() -> Console:
    """A console on stdout; when it is not a terminal, wide enough not to wrap tables."""
    return Console(width=None if sys.stdout.isatty() else 160)


ID_COLUMNS = frozenset({"tenant/entity", "evidence id", "id", "source", "pattern/id", "evidence"})
"""Table columns that hold ids: wrapped onto more lines when narrow, never cut short."""


def add_columns(table: Table, *names: str) -> None:
    """Add columns to ``table``; an id column folds instead of ending in an ellipsis.

    An id cut short cannot be searched for or pasted into the next command, so
    on a narrow console it is wrapped onto as many lines as it needs.
    """
    for name in names:
        table.add_column(name, overflow="fold" if name in ID_COLUMNS else "ellipsis")


def plain(text: str) -> Text:
    """``text`` for a table cell or a console line, shown exactly as it is.

    Ids, error messages and anything else a producer controls may hold
    ``[bold]``, ``[/]`` or ``:smile:``: as a string, rich would read them as
    markup (swallowing or restyling what follows) or as an emoji code.
    ``rich.markup.escape`` covers markup, not emoji codes; a ``Text`` is
    never parsed at all.
    """
    return Text(text)


def err_console() -> Console:
    """A console on stderr, for progress and diagnostics."""
    return Console(stderr=True, soft_wrap=True)


def run(coro: Coroutine[object, object, T]) -> T:
    """Run a command's coroutine; turn store errors into one clear line and exit 1."""
    try:
        return asyncio.run(coro)
    except NotProvisionedError as exc:
        raise click.ClickException(f"not provisioned: {exc}") from exc
    except EventStoreError as exc:
        raise click.ClickException(store_error(exc)) from exc
    except KeyboardInterrupt:  # pragma: no cover - interactive
        sys.exit(130)


async def connect_provisioned(
    settings: Settings, *, name: str, categories: Iterable[Category] = _CATEGORIES
) -> EventStore:
    """A store on a server where ``riskpipe init`` has created the streams a command uses.

    A command that reads or writes the log checks first, so that on a fresh
    server it says what to do instead of reporting an empty log, or a
    confusing "no responders" from a stream that is not there. It checks only
    the streams of ``categories``: a producer may look up the evidence stream
    and no other.

    Raises:
        NotProvisionedError: a stream is missing.
        PermissionDeniedError: the user may not look a stream up.
        StoreUnavailableError: NATS cannot be reached.
    """
    store = await connect_store(settings, name=name)
    async with contextlib.AsyncExitStack() as checking:
        # inside the store's block: closed if a check fails, and a permission
        # denial ends the checks at once instead of waiting for a time-out
        await checking.enter_async_context(store)
        for category in categories:
            await store.stream_state(store.config.stream_for(category))
        checking.pop_all()  # from here the caller's own `async with` closes it
    return store


def store_error(exc: EventStoreError) -> str:
    """A store error's message, with a hint when NATS could not be reached.

    Not when the message has a hint of its own already (a TLS set-up cut short).
    """
    text = str(exc)
    if isinstance(exc, StoreUnavailableError) and "connect" in text and "TLS" not in text:
        return f"{text} (is `riskpipe server` running, or --nats-url set?)"
    return text


def fail(event: str, message: str, *, code: int = 1) -> NoReturn:
    """Log one error line in the configured log format, then exit with ``code``.

    For processes whose stderr is a log stream (the worker): a supervisor or a
    log pipeline reads the reason as one record, not a traceback.
    """
    _log.error(event, error=" ".join(message.split()))  # one line, whatever the message holds
    sys.exit(code)


class _Time(click.ParamType[datetime]):
    """An ISO 8601 time; without a timezone it is UTC."""

    name = "TIME"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            when = value
        else:
            try:
                when = datetime.fromisoformat(str(value))
            except ValueError:
                self.fail(
                    f"{value!r} is not an ISO 8601 time (e.g. 2026-11-29T08:00:00Z)", param, ctx
                )
        return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


TIME = _Time()


def measurement_table(title: str, unit: str, measurements: Iterable[Measurement]) -> Table:
    """A benchmark's paths as a table: median rate, median CPU per item, and every run."""
    table = Table(title=title)
    for column in ("path", f"{unit} (median)", "client CPU µs each (median)", "runs"):
        table.add_column(column)
    for m in measurements:
        table.add_row(
            m.name,
            f"{m.median:,.0f}",
            f"{m.median_cpu_us:,.1f}",
            ", ".join(f"{r:,.0f}" for r in m.rates),
        )
    return table


def checked_token(value: str, what: str) -> str:
    """``value`` when it is a valid subject token; else a usage error (exit 2) naming ``what``."""
    try:
        return validate_token(value, what=what)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def optional_tenant(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A ``--tenant`` option's callback: the tenant checked as a subject token, or ``None``."""
    del ctx, param
    return None if value is None else checked_token(value, "tenant")
