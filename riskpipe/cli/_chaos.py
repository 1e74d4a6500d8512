"""``riskpipe chaos``: inject faults into real processes and check every invariant afterwards."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import click

from eventstore.errors import EventStoreError
from riskpipe.chaos import CLUSTER_ONLY, SCENARIOS, ChaosError, ChaosOptions, ChaosResult, run_chaos
from riskpipe.cli._app import AppContext, main, pass_app
from riskpipe.cli._common import out_console, store_error
from riskpipe.logs import configure_logging
from riskpipe.server import ServerStartError

_SHOWN = 5
"""Violations printed per invariant (``--json`` and the kept history have them all)."""
_AUTH = Path("deploy") / "nats" / "auth.conf"
"""The deployment's users and permissions, in a checkout of riskpipe."""


def _auth_of(auth: Path | None, *, no_auth: bool) -> Path | None:
    """The auth config to run with: ``--auth``, else the checkout's, or none (``--no-auth``).

    Raises:
        click.BadParameter: both options, or neither and no checkout's config found.
    """
    if no_auth:
        if auth is not None:
            raise click.BadParameter("give --auth or --no-auth, not both", param_hint="--auth")
        return None
    if auth is not None:
        return auth
    for root in (Path(__file__).resolve().parents[2], Path.cwd()):
        if (root / _AUTH).is_file():
            return root / _AUTH
    raise click.BadParameter(
        f"no {_AUTH} here: give the servers' users with --auth FILE, or run open"
        " servers with --no-auth",
        param_hint="--auth",
    )


@main.command()
@click.option(
    "--scenario",
    type=click.Choice(SCENARIOS),
    default="mixed",
    show_default=True,
    help="The faults to inject (mixed: all of them).",
)
@click.option(
    "--seconds",
    type=click.FloatRange(5, 86_400),
    default=60,
    show_default=True,
    help="How long the load and the faults last.",
)
@click.option("--seed", type=int, default=1, show_default=True, help="The schedule's seed.")
@click.option(
    "--nodes",
    type=click.Choice(["1", "3"]),
    default="1",
    show_default=True,
    help="One server, or a 3-node cluster with every stream on R3.",
)
@click.option("--workers", type=click.IntRange(1, 8), default=2, show_default=True)
@click.option(
    "--rate",
    type=click.FloatRange(1, 5_000),
    default=200,
    show_default=True,
    help="Evidence appended per second.",
)
@click.option(
    "--auth",
    type=click.Path(dir_okay=False, exists=True, readable=True, path_type=Path),
    default=None,
    help="The servers' accounts and users (default: the checkout's deploy/nats/auth.conf): "
    "users admin, producer, worker, auditor and sys, with passwords from "
    "$NATS_<USER>_PASSWORD. The run logs in with them and probes what producer "
    "credentials must not do.",
)
@click.option("--no-auth", is_flag=True, help="Open servers, no logins: no credential probes.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the history, the server stores, the server and worker logs and the final"
    " streams (final/) in this directory.",
)
@pass_app
def chaos(  # noqa: PLR0913, PLR0917 - one option each
    app: AppContext,
    scenario: str,
    seconds: float,
    seed: int,
    nodes: str,
    workers: int,
    rate: float,
    auth: Path | None,
    no_auth: bool,
    as_json: bool,
    keep: Path | None,
) -> None:
    """Run a seeded fault schedule against private servers and workers, then check invariants.

    Starts its own nats-server(s), producers and worker processes, injects
    the scenario's faults for --seconds under load, heals everything, waits
    for the pipeline to be quiet, and checks every invariant over the
    recorded history and the final streams. Exits 0 only when none is
    violated.
    """
    if int(nodes) == 1 and scenario in CLUSTER_ONLY:
        raise click.BadParameter(f"{scenario} needs --nodes 3", param_hint="--scenario")
    if keep is not None and keep.exists() and any(keep.iterdir()):
        raise click.BadParameter(f"{keep} is not empty", param_hint="--keep")
    # The harness's own connections meet every fault on purpose (reconnects, and
    # the probes' permission denials): what it finds is in its report, not its log.
    configure_logging("critical", app.settings.log_format)
    directory = keep or Path(tempfile.mkdtemp(prefix="riskpipe-chaos-"))
    options = ChaosOptions(
        scenario=scenario,  # type: ignore[arg-type]
        seconds=seconds,
        seed=seed,
        directory=directory,
        nodes=int(nodes),
        workers=workers,
        rate=rate,
        auth=_auth_of(auth, no_auth=no_auth),
    )
    terminated: list[int] = []
    try:
        result = asyncio.run(_until_terminated(options, terminated))
    except (ChaosError, ServerStartError) as exc:
        raise click.ClickException(f"{exc}") from exc
    except EventStoreError as exc:
        raise click.ClickException(store_error(exc)) from exc
    except (KeyboardInterrupt, asyncio.CancelledError):
        sys.exit(128 + (terminated[0] if terminated else signal.SIGINT))
    finally:
        if keep is None:
            shutil.rmtree(directory, ignore_errors=True)
    if terminated:  # the signal came as the run was ending: it was still stopped, not passed
        sys.exit(128 + terminated[0])
    if as_json:
        click.echo(json.dumps(result.to_json()))
    else:
        _print(result, keep)
    sys.exit(0 if result.ok else 1)


async def _until_terminated(options: ChaosOptions, terminated: list[int]) -> ChaosResult:
    """The run, cancelled by SIGTERM as Ctrl-C cancels it: its cleanup runs at an await point.

    Cancelling the task, rather than raising from the signal handler, lets the
    run wake and stop its workers and servers in order, wherever it was.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None  # noqa: S101 - asyncio.run runs this as a task

    def _terminate() -> None:
        terminated.append(signal.SIGTERM)
        task.cancel()

    loop.add_signal_handler(signal.SIGTERM, _terminate)
    try:
        return await run_chaos(options)
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def _print(result: ChaosResult, keep: Path | None) -> None:
    console = out_console()
    console.print(result.headline(), markup=False, highlight=False)
    for found in result.report.violated().values():
        for violation in found[:_SHOWN]:
            console.print(violation.render(), markup=False, highlight=False)
        if len(found) > _SHOWN:
            console.print(f"    ... and {len(found) - _SHOWN} more", markup=False)
    for exit_line in result.worker_exits:
        console.print(f"note: {exit_line}", markup=False, highlight=False)
    if keep is not None:
        console.print(
            f"history, server stores, logs and final streams kept in {keep}", markup=False
        )
