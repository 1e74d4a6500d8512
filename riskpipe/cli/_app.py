"""The ``riskpipe`` command group and the shared context every command receives."""

from __future__ import annotations

from dataclasses import dataclass

import click

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
@click.version_option(package_name="riskpipe")
@click.pass_context
def main(ctx: click.Context, nats_url: str | None) -> None:
    """riskpipe: evidence in, explainable risk assessments out, on NATS JetStream."""
    settings = Settings()
    if nats_url:
        settings = settings.model_copy(update={"nats_url": nats_url})
    ctx.obj = AppContext(settings=settings)


@main.group()
def bench() -> None:
    """Benchmarks that compare riskpipe with a raw baseline in the same run."""
