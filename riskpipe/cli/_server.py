"""``riskpipe server``: the embedded nats-server in the foreground."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import TYPE_CHECKING

import click

from riskpipe.cli._app import AppContext, main, pass_app
from riskpipe.server import NatsServer, ServerStartError

if TYPE_CHECKING:
    from types import FrameType


@main.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="JetStream store directory [default: ./.riskpipe/nats].",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=4222, show_default=True, help="Client port (-1 picks a free one).")
@click.option("--quiet", is_flag=True, help="Do not mirror the server's log.")
@pass_app
def server(app: AppContext, data_dir: Path | None, host: str, port: int, quiet: bool) -> None:
    """Run nats-server with JetStream in the foreground until Ctrl-C or SIGTERM."""
    store = data_dir if data_dir is not None else app.settings.data_dir / "nats"
    proc = NatsServer(data_dir=store, host=host, port=port, echo=not quiet)
    try:
        proc.start()
    except ServerStartError as exc:
        raise click.ClickException(str(exc)) from exc

    def _stop(signum: int, _frame: FrameType | None) -> None:
        # only signal the child here: waiting for it belongs to the main flow below
        click.echo(f"riskpipe server: {signal.Signals(signum).name}, stopping", err=True)
        proc.terminate()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    click.echo(f"riskpipe server: ready on {proc.url}, data in {store}", err=True)
    code = proc.wait()
    proc.stop()
    if code not in (0, 1, -signal.SIGTERM, -signal.SIGINT):
        raise click.ClickException(f"nats-server exited with code {code}")
