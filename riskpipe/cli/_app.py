"""The ``riskpipe`` command group and the shared context every command receives."""

from __future__ import annotations

from dataclasses import dataclass

import click
from pydantic import ValidationError

from riskpipe.cli._connect import connection_options, connection_overrides
from riskpipe.logs import configure_logging
from riskpipe.runtime import tune_gc
from riskpipe.settings import Settings

__all__ = ["AppContext", "bench", "main", "pass_app"]


@dataclass
class AppContext:
    """What every command can use: settings with CLI overrides applied."""

    settings: Settings


pass_app = click.make_pass_decorator(AppContext)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--nats-url",
    envvar="RISKPIPE_NATS_URL",
    default=None,
    help="NATS server URL [env RISKPIPE_NATS_URL; default nats://127.0.0.1:4222].",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default=None,
    help="Log level [env RISKPIPE_LOG_LEVEL; default info].",
)
@click.option(
    "--log-format",
    type=click.Choice(["auto", "json", "console"]),
    default=None,
    help="Log format; auto is console on a terminal, JSON lines otherwise.",
)
@connection_options
@click.version_option(package_name="riskpipe")
@click.pass_context
def main(
    ctx: click.Context, nats_url: str | None, log_level: str | None, log_format: str | None
) -> None:
    """riskpipe: evidence in, explainable risk assessments out, on NATS JetStream."""
    overrides = {
        key: value
        for key, value in (
            ("nats_url", nats_url),
            ("log_level", log_level),
            ("log_format", log_format),
        )
        if value
    }
    overrides.update(connection_overrides(ctx))  # TLS files and credentials
    try:
        settings = Settings()
    except ValidationError as exc:
        raise click.UsageError(f"invalid RISKPIPE_* environment: {exc}") from exc
    # click has already validated the choices of these flags
    settings = settings.model_copy(update=overrides)
    configure_logging(settings.log_level, settings.log_format)
    tune_gc(settings.gc_threshold)
    ctx.obj = AppContext(settings=settings)


@main.group()
def bench() -> None:
    """Benchmarks that compare riskpipe with a raw baseline in the same run."""
