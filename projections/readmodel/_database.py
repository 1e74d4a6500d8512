"""The database behind the read model: SQLite (aiosqlite) or PostgreSQL (asyncpg).

Writers and readers get different transactions. On SQLite a writer's
transaction starts with ``BEGIN IMMEDIATE``: it takes the write lock before it
reads its tracking position, so two writers queue instead of both reading the
same position and one failing at its first write. The database is in WAL
mode, so readers never wait for a writer. On PostgreSQL both run at READ
COMMITTED; a writer's first statement locks its tracking row.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from projections.readmodel.errors import DatabaseUnavailableError, DatabaseUrlError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sqlalchemy.engine import URL

__all__ = ["Database", "normalise_url", "shown_url"]

_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}
_WRITE = "riskpipe_write"
"""Execution option of a writer's connection: on SQLite its transaction is BEGIN IMMEDIATE."""
_BUSY_MS = 30_000
"""How long a SQLite writer waits for another one's lock before failing."""
_CONNECT_TIMEOUT = 10.0


def shown_url(url: str) -> str:
    """``url`` with its password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparsable)"


def normalise_url(url: str) -> URL:
    """The URL with its async driver: ``sqlite:///f`` reads as ``sqlite+aiosqlite:///f``.

    Raises:
        DatabaseUrlError: not a URL, another database, or an in-memory SQLite database.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseUrlError(
            "(unparsable)",
            "not a database URL (e.g. sqlite:///.riskpipe/readmodel.db or"
            " postgresql+asyncpg://user:password@host/db)",
        ) from None
    shown = parsed.render_as_string(hide_password=True)
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise DatabaseUrlError(
            shown,
            f"the driver {parsed.drivername!r} is not supported: use sqlite+aiosqlite or"
            " postgresql+asyncpg",
        )
    parsed = parsed.set(drivername=driver)
    if driver.startswith("sqlite") and parsed.database in (None, "", ":memory:"):
        raise DatabaseUrlError(
            shown, "an in-memory SQLite database vanishes with each connection: name a file"
        )
    if driver.startswith("postgresql") and not parsed.host:
        raise DatabaseUrlError(shown, "a PostgreSQL URL needs a host")
    return parsed


class Database:
    """An async engine on the read model's database, and the transactions it hands out.

    Raises:
        DatabaseUrlError: ``url`` cannot be used (see :func:`normalise_url`).
    """

    def __init__(self, url: str, *, pool_size: int = 5) -> None:
        parsed = normalise_url(url)
        self.url = parsed
        self.shown = parsed.render_as_string(hide_password=True)
        self.dialect = parsed.get_backend_name()
        options: dict[str, Any] = {}
        if self.dialect == "sqlite":
            options["connect_args"] = {"timeout": _BUSY_MS / 1000}
        else:
            options["connect_args"] = {"timeout": _CONNECT_TIMEOUT}
            options["pool_size"] = pool_size
            options["pool_pre_ping"] = True
        self.engine: AsyncEngine = create_async_engine(parsed, **options)
        if self.dialect == "sqlite":
            _sqlite_transactions(self.engine)
        self._writer = self.engine.execution_options(**{_WRITE: True})

    @property
    def is_sqlite(self) -> bool:
        """Whether the database is SQLite."""
        return self.dialect == "sqlite"

    def missing(self) -> bool:
        """Whether the database is a SQLite file that does not exist (yet)."""
        return self.is_sqlite and not Path(self.url.database or "").exists()

    async def check(self) -> None:
        """Connect once, so a bad address or login is reported before any work.

        The directory of a SQLite file is created if it is missing.

        Raises:
            DatabaseUnavailableError: the database cannot be reached or opened.
        """
        if self.is_sqlite and self.url.database:
            try:
                Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DatabaseUnavailableError(self.shown, str(exc)) from exc
        async with self.connect() as conn:
            await conn.execute(text("SELECT 1"))

    @contextlib.asynccontextmanager
    async def connect(self, *, writer: bool = False) -> AsyncIterator[AsyncConnection]:
        """A connection without a transaction; connection failures become typed errors.

        Raises:
            DatabaseUnavailableError: the database cannot be reached or opened.
        """
        conn = (self._writer if writer else self.engine).connect()
        try:
            await conn.start()
        except (DBAPIError, OSError, TimeoutError) as exc:
            raise DatabaseUnavailableError(self.shown, _reason(exc)) from exc
        try:
            yield conn
        finally:
            await conn.close()

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A writer's transaction: committed when the block ends, rolled back if it raises.

        Raises:
            DatabaseUnavailableError: the database cannot be reached or opened.
        """
        async with self.connect(writer=True) as conn, conn.begin():
            yield conn

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A reader's transaction (rolled back at the end: it writes nothing).

        Raises:
            DatabaseUnavailableError: the database cannot be reached or opened.
        """
        async with self.connect() as conn, conn.begin() as tx:
            yield conn
            await tx.rollback()

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()


def _reason(exc: BaseException) -> str:
    """A one-line reason from a driver's error, without SQLAlchemy's boilerplate."""
    inner = getattr(exc, "orig", None) or exc
    text_ = str(inner).strip().splitlines()[0] if str(inner).strip() else type(inner).__name__
    return f"{type(inner).__name__}: {text_}"


def _sqlite_transactions(engine: AsyncEngine) -> None:
    """Let SQLAlchemy, not the driver, begin transactions; WAL; a writer waits for a lock."""

    @event.listens_for(engine.sync_engine, "connect")
    def _connected(dbapi_connection: Any, _record: object) -> None:  # noqa: ANN401 - DBAPI
        dbapi_connection.isolation_level = None  # the driver emits no BEGIN of its own
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={_BUSY_MS}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Any) -> None:  # noqa: ANN401 - the sync Connection
        immediate = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
