"""``riskpipe server``: the embedded nats-server (or a local 3-node cluster) in the foreground."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import TYPE_CHECKING

import click

from riskpipe.cli._app import AppContext, main, pass_app
from riskpipe.server import NatsCluster, NatsServer, ServerStartError

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType

_CLUSTER_SIZE = 3
_CLEAN_EXITS = (0, 1, -signal.SIGTERM, -signal.SIGINT)


@main.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="JetStream store directory [default: ./.riskpipe/nats, or ./.riskpipe/cluster].",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=4222,
    show_default=True,
    help="Client port (-1 picks a free one); with --cluster, the first node's (then +1, +2).",
)
@click.option(
    "--cluster",
    is_flag=True,
    help="Run a 3-node JetStream cluster on this host (nodes n1..n3, own stores and ports).",
)
@click.option("--quiet", is_flag=True, help="Do not mirror the server's log.")
@pass_app
def server(  # noqa: PLR0913, PLR0917 - one click option each
    app: AppContext, data_dir: Path | None, host: str, port: int, cluster: bool, quiet: bool
) -> None:
    """Run nats-server with JetStream in the foreground until Ctrl-C or SIGTERM.

    With --cluster, three nodes form one JetStream cluster (for R3 streams:
    `riskpipe init --replicas 3`); their URLs are printed on stdout,
    comma-separated, as RISKPIPE_NATS_URL takes them.
    """
    if cluster:
        _run_cluster(data_dir or app.settings.data_dir / "cluster", host, port, echo=not quiet)
        return
    store = data_dir if data_dir is not None else app.settings.data_dir / "nats"
    proc = NatsServer(data_dir=store, host=host, port=port, echo=not quiet)
    try:
        proc.start()
    except ServerStartError as exc:
        raise click.ClickException(str(exc)) from exc
    _stop_on_signals(proc.terminate)
    click.echo(f"riskpipe server: ready on {proc.url}, data in {store}", err=True)
    code = proc.wait()
    proc.stop()
    if code not in _CLEAN_EXITS:
        raise click.ClickException(f"nats-server exited with code {code}")


def _run_cluster(data_dir: Path, host: str, port: int, *, echo: bool) -> None:
    ports = [-1 if port == -1 else port + i for i in range(_CLUSTER_SIZE)]
    nodes = NatsCluster(data_dir=data_dir, size=_CLUSTER_SIZE, host=host, ports=ports, echo=echo)
    try:
        nodes.start()
    except ServerStartError as exc:
        raise click.ClickException(str(exc)) from exc
    _stop_on_signals(nodes.terminate)
    click.echo(f"riskpipe server: cluster ready on {nodes.urls}, data in {data_dir}", err=True)
    click.echo(nodes.urls)
    codes = nodes.wait()
    nodes.stop()
    if failed := [code for code in codes if code not in _CLEAN_EXITS]:
        raise click.ClickException(f"nats-server exited with code {failed[0]}")


def _stop_on_signals(terminate: Callable[[], None]) -> None:
    def _stop(signum: int, _frame: FrameType | None) -> None:
        # only signal the children here: waiting for them belongs to the main flow
        click.echo(f"riskpipe server: {signal.Signals(signum).name}, stopping", err=True)
        terminate()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
