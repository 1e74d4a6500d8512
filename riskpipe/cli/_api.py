"""``riskpipe api``: serve the HTTP API; ``riskpipe api add-token``: make a token for it."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
import structlog
from prometheus_client import CollectorRegistry

from analyzers import InvalidConfigError, load_config
from eventstore.errors import EventStoreError
from projections.readmodel import ReadModelError, ReadModelReader
from riskpipe.api import ROLES, TokensFileError, add_token, create_app, load_tokens
from riskpipe.cli._app import AppContext, main
from riskpipe.cli._common import connect_provisioned, fail, store_error
from riskpipe.console import ConsoleOptions
from riskpipe.errors import RiskpipeError
from riskpipe.http import AppServer
from riskpipe.readmodel import open_database, read_model

if TYPE_CHECKING:
    from riskpipe.api import TokenTable
    from riskpipe.settings import Settings

_log = structlog.get_logger(__name__)
_TOKENS_HELP = "The tokens file [env RISKPIPE_API_TOKENS; default <data dir>/api-tokens.yaml]."


def _tokens_file(ctx: click.Context, given: Path | None) -> Path:
    """The tokens file: this command's flag, the group's, then the settings'."""
    app: AppContext = ctx.find_object(AppContext)  # type: ignore[assignment]
    return given or ctx.meta.get("api.tokens") or app.settings.api_tokens_file


@main.group(invoke_without_command=True)
@click.option(
    "--host", default=None, help="Address to listen on [env RISKPIPE_API_HOST; 127.0.0.1]."
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port to listen on; 0 picks a free one [env RISKPIPE_API_PORT; 8080].",
)
@click.option(
    "--tokens", type=click.Path(dir_okay=False, path_type=Path), default=None, help=_TOKENS_HELP
)
@click.option(
    "--follow/--no-follow",
    default=True,
    show_default=True,
    help="Keep the SQL read model (RISKPIPE_DATABASE_URL) current from this process;"
    " --no-follow when `riskpipe readmodel run` does it.",
)
@click.pass_context
def api(
    ctx: click.Context, host: str | None, port: int | None, tokens: Path | None, follow: bool
) -> None:
    """Serve the HTTP API under /api/, and the web console under /console/, until SIGTERM/Ctrl-C.

    See docs/api.md and docs/console.md.

    Requests carry a bearer token from the tokens file; make one with
    `riskpipe api add-token`. The OpenAPI document is at /openapi.json.
    """
    ctx.meta["api.tokens"] = tokens
    if ctx.invoked_subcommand is not None:
        return
    app: AppContext = ctx.obj
    updates: dict[str, object] = {}
    if host is not None:
        updates["api_host"] = host
    if port is not None:
        updates["api_port"] = port
    settings = app.settings.model_copy(update=updates)
    path = _tokens_file(ctx, tokens)
    try:
        table = load_tokens(path)
        asyncio.run(_serve(settings, table, follow=follow))
    except EventStoreError as exc:
        fail("api.failed", store_error(exc))
    except (RiskpipeError, ReadModelError, InvalidConfigError) as exc:  # files, address, database
        fail("api.failed", str(exc))
    except KeyboardInterrupt:  # pragma: no cover - a second Ctrl-C while stopping
        sys.exit(130)


async def _serve(settings: Settings, tokens: TokenTable, *, follow: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    db = open_database(settings)
    async with await connect_provisioned(settings, name="riskpipe-api") as store:
        registry = CollectorRegistry()
        app = create_app(
            store=store,
            tokens=tokens,
            registry=registry,
            projection=settings.projection,
            max_body_bytes=settings.api_max_body_bytes,
            max_evidence_bytes=settings.api_max_evidence_bytes,
            reader=ReadModelReader(db),
            console=_console_options(settings),
            serve_console=settings.console,
        )
        server = AppServer(app, host=settings.api_host, port=settings.api_port)
        follower = None
        if follow:  # the case list reads the read model: keep it current from here
            model = read_model(store, db, settings, registry)
            await model.prepare()  # a database that cannot be used stops the API at once
            follower = asyncio.create_task(model.run(stop), name="readmodel")
            follower.add_done_callback(_report)
        await server.start()
        _log.info(
            "api.serving", host=server.host, port=server.port, tokens=len(tokens), follow=follow
        )
        try:
            await stop.wait()
        finally:
            await server.stop()
            if follower is not None:
                await _stopped(follower)
            await db.dispose()
            _log.info("api.stopped")


def _console_options(settings: Settings) -> ConsoleOptions:
    """The console's options from the settings: its session key and length, the chart's bands.

    Raises:
        InvalidConfigError: the analyzer config file (for the level bands) is not valid.
    """
    secret = settings.console_secret
    config = load_config(settings.analyzer_config) if settings.analyzer_config else None
    return ConsoleOptions(
        secret=secret.get_secret_value().encode() if secret is not None else None,
        session_seconds=settings.console_session_minutes * 60,
        thresholds=config.thresholds.ascending() if config is not None else None,
    )


def _report(follower: asyncio.Task[None]) -> None:
    """Log at once a follower that stopped on its own (the case list then stops moving)."""
    if not follower.cancelled() and (exc := follower.exception()) is not None:
        _log.error("api.readmodel_failed", error=str(exc))


async def _stopped(follower: asyncio.Task[None]) -> None:
    """Wait for the read model's follower to stop; say so if it had failed."""
    with contextlib.suppress(Exception):  # a failure was reported when it happened
        await follower


@api.command("add-token")
@click.argument("name")
@click.option("--role", required=True, help=f"One of: {', '.join(ROLES)}.")
@click.option(
    "--tenant",
    "tenants",
    multiple=True,
    required=True,
    help='A tenant the token sees (repeat for more); "*" is every tenant.',
)
@click.option(
    "--tokens", type=click.Path(dir_okay=False, path_type=Path), default=None, help=_TOKENS_HELP
)
@click.pass_context
def api_add_token(
    ctx: click.Context, name: str, role: str, tenants: tuple[str, ...], tokens: Path | None
) -> None:
    """Make a token NAME; print it once, and store only its SHA-256 in the tokens file.

    The API reads the tokens file when it starts: restart it to accept the new token.
    """
    path = _tokens_file(ctx, tokens)
    if role not in ROLES:
        raise click.ClickException(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    try:
        token = add_token(path, name, role, tenants)
    except (TokensFileError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(f"tokens file {path}: {exc.strerror or exc}") from exc
    click.echo(token)
    click.echo(
        f"token {name!r} ({role}; tenants {', '.join(tenants)}) added to {path}:"
        " it is shown only now, keep it",
        err=True,
    )
