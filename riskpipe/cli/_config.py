"""``riskpipe config``: analyzer config versions proposed, promoted and rolled back (audited)."""

from __future__ import annotations

import getpass
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import click
from pydantic import TypeAdapter, ValidationError
from rich.table import Table

from analyzers import load_config
from analyzers.errors import InvalidConfigError
from projections.learning import (
    ConfigBook,
    ConfigBookError,
    Promotion,
    Proposal,
    load_version,
    promote,
    propose,
    read_config_book,
)
from projections.learning._events import ConfigVersion
from projections.review import Actor
from riskpipe.cli._app import AppContext, main
from riskpipe.cli._common import add_columns, connect_provisioned, out_console, plain, run

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from eventstore import EventStore

_CATEGORIES = ("config", "evidence")
_NAME = "riskpipe-config"
_CELL = 40  # metrics longer than this are left out of the list's summary
_VERSION: TypeAdapter[str] = TypeAdapter(ConfigVersion)


class ConfigRefusedError(ConfigBookError):
    """A promotion or rollback the command refuses before appending anything."""


def _now() -> datetime:
    return datetime.now(UTC)


def acting_actor(by: str | None) -> Actor:
    name = by or os.environ.get("RISKPIPE_ACTOR") or getpass.getuser()
    try:
        return Actor.model_validate({"name": name, "role": "operator"})
    except ValidationError as exc:
        raise click.BadParameter(
            f"{name!r}: use 1 to 128 printable characters, no spaces", param_hint="--by"
        ) from exc


def checked_version(value: str) -> str:
    try:
        return str(_VERSION.validate_python(value))
    except ValidationError as exc:
        raise click.BadParameter(
            f"{value!r} is not a version name: use 1 to 64 letters, digits, '-' or '_',"
            " starting with a letter or digit"
        ) from exc


def checked_reason(value: str) -> str:
    if not value.strip():
        raise click.BadParameter("say why, in a few words", param_hint="--reason")
    return value


def _proposal_json(proposal: Proposal) -> dict[str, Any]:
    data = proposal.data
    return {
        "version": data.version,
        "analyzer_version": data.analyzer_version,
        "fingerprint": data.fingerprint,
        "proposed_at": proposal.time.isoformat(),
        "by": data.by.model_dump(),
        "reason": data.reason,
        "metrics": data.metrics,
        "training": None if data.training is None else data.training.model_dump(mode="json"),
        "sequence": proposal.sequence,
    }


def _promotion_json(promotion: Promotion) -> dict[str, Any]:
    data = promotion.data
    return {
        "version": data.version,
        "kind": data.kind,
        "fingerprint": data.fingerprint,
        "previous": data.previous,
        "effective_from": data.effective_from,
        "promoted_at": promotion.time.isoformat(),
        "by": data.by.model_dump(),
        "reason": data.reason,
        "metrics": data.metrics,
        "sequence": promotion.sequence,
    }


def _book_json(book: ConfigBook) -> dict[str, Any]:
    live = book.live
    return {
        "log_version": book.version,
        "live": None if live is None else _promotion_json(live),
        "versions": [
            {**_proposal_json(p), "live": live is not None and live.version == p.version}
            for p in book.proposals.values()
        ],
        "promotions": [_promotion_json(p) for p in book.promotions],
        "pending": None if book.pending is None else book.pending.model_dump(mode="json"),
    }


def _metrics_summary(metrics: dict[str, Any]) -> str:
    shown = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()]
    shown = [s for s in shown if len(s) <= _CELL][:4]
    return ", ".join(shown) or "-"


@main.group()
def config() -> None:
    """Analyzer config versions: propose, list, show, promote, roll back (docs/promotion.md)."""


_json = click.option("--json", "as_json", is_flag=True, help="One compact JSON line.")
_by = click.option(
    "--by", default=None, help="Who acts [default: RISKPIPE_ACTOR or the user]; role operator."
)


@config.command("propose")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--version", "version", required=True, help="The new version's name.")
@click.option("--reason", default=None, help="Why: recorded with the proposal.")
@_by
@_json
@click.pass_obj
def config_propose(  # noqa: PLR0913, PLR0917 - one click option each
    app: AppContext, path: Path, version: str, reason: str | None, by: str | None, as_json: bool
) -> None:
    """Record the analyzer config in PATH (TOML or YAML) as version VERSION."""
    version = checked_version(version)
    actor = acting_actor(by)
    if reason is not None:
        checked_reason(reason)
    try:
        loaded = load_config(path)
    except InvalidConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="PATH") from exc

    async def proposed(store: EventStore, book: ConfigBook) -> dict[str, Any]:
        found = await propose(
            store, book, loaded, version=version, by=actor, clock=_now, reason=reason
        )
        return _proposal_json(found)

    body = _guarded(app, proposed)
    if as_json:
        click.echo(json.dumps(body, sort_keys=True))
        return
    click.echo(
        f"proposed config version {body['version']} (fingerprint {body['fingerprint'][:12]},"
        f" analyzer {body['analyzer_version']}); promote it with:"
        f" riskpipe config promote {body['version']} --reason TEXT"
    )


@config.command("list")
@_json
@click.pass_obj
def config_list(app: AppContext, as_json: bool) -> None:
    """Every proposed version, which is live since which evidence, and every promotion."""

    async def listed(_store: EventStore, book: ConfigBook) -> dict[str, Any]:
        return _book_json(book)

    body = _guarded(app, listed)
    if as_json:
        click.echo(json.dumps(body, sort_keys=True))
        return
    live = body["live"]
    table = Table(title=f"config versions ({len(body['versions'])})")
    add_columns(table, "version", "live", "proposed", "by", "fingerprint", "analyzer", "metrics")
    for row in body["versions"]:
        table.add_row(
            plain(row["version"]), "live" if row["live"] else "",
            row["proposed_at"][:19], plain(row["by"]["name"]), row["fingerprint"][:12],
            row["analyzer_version"], plain(_metrics_summary(row["metrics"])),
        )  # fmt: skip
    console = out_console()
    console.print(table)
    if live is None:
        console.print("live: none promoted; workers score with their own config")
    else:
        console.print(
            f"live: {live['version']} since evidence {live['effective_from']}", highlight=False
        )
    if (pending := body["pending"]) is not None:
        console.print(
            f"a {pending['kind']} of {pending['version']} was started and not recorded:"
            " workers hold evidence until one is (if its process died, promote again)",
            highlight=False,
        )
    if body["promotions"]:
        history = Table(title="promotions")
        add_columns(history, "at", "kind", "version", "previous", "from evidence", "by", "reason")
        for p in body["promotions"]:
            history.add_row(
                p["promoted_at"][:19], p["kind"], plain(p["version"]), plain(p["previous"] or "-"),
                str(p["effective_from"]), plain(p["by"]["name"]), plain(p["reason"]),
            )  # fmt: skip
        console.print(history)


@config.command("show")
@click.argument("version")
@_json
@click.pass_obj
def config_show(app: AppContext, version: str, as_json: bool) -> None:
    """One version: who proposed it, why, its metrics, its promotions and the config itself."""
    version = checked_version(version)

    async def shown(_store: EventStore, book: ConfigBook) -> dict[str, Any]:
        proposal = book.proposal(version)
        live = book.live
        return {
            **_proposal_json(proposal),
            "live": live is not None and live.version == version,
            "promotions": [_promotion_json(p) for p in book.promotions if p.version == version],
            "config": proposal.data.config,
        }

    body = _guarded(app, shown)
    if as_json:
        click.echo(json.dumps(body, sort_keys=True))
        return
    click.echo(json.dumps(body, indent=2, sort_keys=True))


@config.command("promote")
@click.argument("version")
@click.option("--reason", required=True, help="Why: recorded with the promotion.")
@_by
@_json
@click.pass_obj
def config_promote(
    app: AppContext, version: str, reason: str, by: str | None, as_json: bool
) -> None:
    """Make VERSION live for every evidence stored from now on."""
    version, reason, actor = checked_version(version), checked_reason(reason), acting_actor(by)

    async def promoted(store: EventStore, book: ConfigBook) -> dict[str, Any]:
        return await _promote(store, book, version, actor, reason, "promotion")

    _print_promotion(_guarded(app, promoted), as_json=as_json)


@config.command("rollback")
@click.option("--reason", required=True, help="Why: recorded with the rollback.")
@_by
@_json
@click.pass_obj
def config_rollback(app: AppContext, reason: str, by: str | None, as_json: bool) -> None:
    """Promote again the version that was live before the current one (kind rollback)."""
    reason, actor = checked_reason(reason), acting_actor(by)

    async def rolled_back(store: EventStore, book: ConfigBook) -> dict[str, Any]:
        live = book.live
        if live is None:
            raise ConfigRefusedError("nothing to roll back: no config version was ever promoted")
        if live.data.previous is None:
            raise ConfigRefusedError(
                f"nothing to roll back to: {live.version} is the first version promoted;"
                " promote another version instead (riskpipe config promote VERSION)"
            )
        return await _promote(store, book, live.data.previous, actor, reason, "rollback")

    _print_promotion(_guarded(app, rolled_back), as_json=as_json)


async def _promote(  # noqa: PLR0913, PLR0917 - the promotion's fields
    store: EventStore,
    book: ConfigBook,
    version: str,
    actor: Actor,
    reason: str,
    kind: Literal["promotion", "rollback"],
) -> dict[str, Any]:
    """Check the promotion, then append it (fenced on the book)."""
    proposal = book.proposal(version)  # an unknown version is refused here
    live = book.live
    if live is not None and live.version == version:
        raise ConfigRefusedError(
            f"config version {version!r} is live already (since evidence {live.effective_from})"
        )
    checked = load_version(book, version, proposal.data.fingerprint)
    if isinstance(checked, str):
        raise ConfigRefusedError(f"refusing to promote: {checked}")
    promotion = await promote(store, book, version, by=actor, reason=reason, clock=_now, kind=kind)
    return _promotion_json(promotion)


def _print_promotion(body: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(body, sort_keys=True))
        return
    what = "rolled back to" if body["kind"] == "rollback" else "promoted"
    click.echo(
        f"{what} config version {body['version']} (fingerprint {body['fingerprint'][:12]},"
        f" previous {body['previous'] or 'none'}): it scores evidence from sequence"
        f" {body['effective_from']} on"
    )


def _guarded(
    app: AppContext, action: Callable[[EventStore, ConfigBook], Awaitable[dict[str, Any]]]
) -> dict[str, Any]:
    """Read the config book and act on it; a refusal is one clear line and exit 1."""

    async def acted() -> dict[str, Any]:
        async with await connect_provisioned(
            app.settings, name=_NAME, categories=_CATEGORIES
        ) as store:
            return await action(store, await read_config_book(store))

    try:
        return run(acted())
    except ConfigBookError as exc:
        raise click.ClickException(str(exc)) from exc
