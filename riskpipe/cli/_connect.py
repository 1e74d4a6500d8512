"""The global flags that say how to connect to NATS securely (docs/security.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from pydantic import SecretStr

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["connection_options", "connection_overrides"]

_F = TypeVar("_F", bound="Callable[..., Any]")
_META = "riskpipe.connection"
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
