"""The global flags that say how to connect to NATS securely (docs/security.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from pydantic import SecretStr

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "connection_options",
    "connection_overrides",
    "target_connection_options",
    "target_connection_overrides",
]

_F = TypeVar("_F", bound="Callable[..., Any]")
_META = "riskpipe.connection"
_TARGET_META = "riskpipe.connection.target"
_TARGET = "--to-"
_FILE = click.Path(path_type=Path)  # checked when connecting, like the variables' files

# (flag, settings field, type, help); each flag overrides its RISKPIPE_* variable
_OPTIONS: tuple[tuple[str, str, Any, str], ...] = (
    ("--tls-ca", "tls_ca", _FILE, "PEM CA bundle that signed the server's certificate"),
    ("--tls-cert", "tls_cert", _FILE, "PEM client certificate, for mutual TLS"),
    ("--tls-key", "tls_key", _FILE, "The client certificate's unencrypted PEM key"),
    ("--tls-hostname", "tls_hostname", str, "Name the server's certificate must carry"),
    ("--creds", "nats_creds", _FILE, "NATS .creds file (user JWT and NKey seed)"),
    ("--nkey-seed", "nkey_seed", _FILE, "File holding the user's NKey seed (SU...)"),
    ("--user", "nats_user", str, "NATS user"),
    ("--password", "nats_password", str, "NATS password (prefer the variable: flags show in ps)"),
    ("--token", "nats_token", str, "NATS token (prefer the variable: flags show in ps)"),
    ("--inbox-prefix", "inbox_prefix", str, "Subject prefix replies arrive under (default _INBOX)"),
)
_SECRET = frozenset({"nats_password", "nats_token"})


def _env(field: str) -> str:
    return "RISKPIPE_" + field.upper()


def _keep(ctx: click.Context, param: click.Parameter, value: object) -> None:
    """Set aside a given flag's value; ``main`` turns them into settings together."""
    if value is not None and value != "" and param.name is not None:
        given = ctx.meta.setdefault(_META, {})
        given[param.name] = SecretStr(str(value)) if param.name in _SECRET else value


def _keep_target(ctx: click.Context, param: click.Parameter, value: object) -> None:
    """Set aside a given ``--to-*`` flag's value, under its settings field."""
    if value is not None and value != "" and param.name is not None:
        field = param.name.removeprefix("to_")
        given = ctx.meta.setdefault(_TARGET_META, {})
        given[field] = SecretStr(str(value)) if field in _SECRET else value


def connection_options(command: _F) -> _F:
    """Add the TLS and credential flags to ``command`` (their values go to ``ctx.meta``)."""
    for flag, field, kind, text in reversed(_OPTIONS):
        command = click.option(
            flag,
            field,
            type=kind,
            default=None,
            expose_value=False,
            callback=_keep,
            help=f"{text} [env {_env(field)}].",
        )(command)
    return command


def connection_overrides(ctx: click.Context) -> dict[str, Any]:
    """The flags that were given, as settings updates (secrets wrapped so they never print)."""
    return dict(ctx.meta.get(_META, {}))


def target_connection_options(command: _F) -> _F:
    """Add ``--to-tls-ca``, ``--to-creds``, ... : the flags above, for a second store.

    Only the secrets have a variable (``RISKPIPE_TO_NATS_PASSWORD``,
    ``RISKPIPE_TO_NATS_TOKEN``): a flag's value shows in ``ps``.
    """
    for flag, field, kind, text in reversed(_OPTIONS):
        envvar = "RISKPIPE_TO_" + field.upper() if field in _SECRET else None
        shown = f" [env {envvar}]" if envvar else ""
        command = click.option(
            _TARGET + flag.removeprefix("--"),
            "to_" + field,
            type=kind,
            default=None,
            envvar=envvar,
            expose_value=False,
            callback=_keep_target,
            help=f"{text}, for the target{shown}.",
        )(command)
    return command


def target_connection_overrides(ctx: click.Context) -> dict[str, Any]:
    """The ``--to-*`` flags that were given, as settings updates of the target's connection."""
    return dict(ctx.meta.get(_TARGET_META, {}))
