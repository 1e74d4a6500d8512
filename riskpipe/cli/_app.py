"""The ``riskpipe`` command group and the shared context every command receives."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import get_args

import click
import structlog
from pydantic import ValidationError

from riskpipe.cli._common import fail
from riskpipe.environment import describe_invalid, unknown_variables
from riskpipe.logs import LogFormat, configure_logging
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
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type] # validated like the environment
    except ValidationError as exc:
        configure_logging("info", _log_format(log_format))
        fail("settings.invalid", "; ".join(describe_invalid(exc, flags=overrides)), code=2)
    configure_logging(settings.log_level, settings.log_format)
    _check_names()
    tune_gc(settings.gc_threshold)
    ctx.obj = AppContext(settings=settings)


def _log_format(flag: str | None) -> LogFormat:
    """The log format to report invalid settings in: the flag's, else the variable's if valid."""
    wanted = flag or os.environ.get("RISKPIPE_LOG_FORMAT", "auto").strip().lower()
    return wanted if wanted in get_args(LogFormat) else "auto"  # type: ignore[return-value]


def _check_names() -> None:
    """Warn about unknown ``RISKPIPE_*`` variables; exit 2 on one that is a misspelt setting."""
    unknown = unknown_variables(os.environ)
    for variable in unknown:
        if not variable.misspelt:
            structlog.get_logger("riskpipe").warning(
                "settings.unknown_variable", warning=variable.describe() + "; ignored"
            )
    misspelt = [v.describe() for v in unknown if v.misspelt]
    if misspelt:
        fail("settings.misspelt", "; ".join(misspelt), code=2)


@main.group()
def bench() -> None:
    """Benchmarks that compare riskpipe with a raw baseline in the same run."""
