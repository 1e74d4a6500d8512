"""A throwaway NATS operator: signed account and user JWTs, ``.creds`` files, a server config.

What ``nsc`` makes, made with the ``nkeys`` package: an operator signs the
accounts (the application account with JetStream, and a system account), an
account signs its users, and a server trusts the operator and preloads the
accounts (``resolver: MEMORY``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import nkeys

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["Operator"]

_UNLIMITED = {
    "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
    "wildcards": True, "conn": -1, "leaf": -1,
}  # fmt: skip
_JETSTREAM = {"mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class _Key:
    seed: bytes
    public: str

    @classmethod
    def new(cls, prefix: int) -> _Key:
        seed = bytes(nkeys.encode_seed(os.urandom(32), prefix))
        key_pair = nkeys.from_seed(bytearray(seed))
        return cls(seed, key_pair.public_key.decode())

    def sign(self, subject: str, name: str, nats: dict[str, Any]) -> str:
        """A JWT about ``subject`` signed by this key."""
        header = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
        claims: dict[str, Any] = {
            "iat": int(time.time()), "iss": self.public, "name": name, "sub": subject,
            "nats": {**nats, "version": 2},
        }  # fmt: skip
        claims["jti"] = hashlib.sha256(json.dumps(claims).encode()).hexdigest()
        body = _b64(json.dumps(claims).encode())
        key_pair = nkeys.from_seed(bytearray(self.seed))
        signature = _b64(key_pair.sign(f"{header}.{body}".encode()))
        return f"{header}.{body}.{signature}"


class Operator:
    """An operator with the account ``RISKPIPE`` (JetStream) and a system account."""

    def __init__(self) -> None:
        self._operator = _Key.new(nkeys.PREFIX_BYTE_OPERATOR)
        self._account = _Key.new(nkeys.PREFIX_BYTE_ACCOUNT)
        self._system = _Key.new(nkeys.PREFIX_BYTE_ACCOUNT)

    def server_config(self, path: Path) -> Path:
        """Write a server config that trusts this operator and knows both accounts."""
        op = self._operator
        operator_jwt = op.sign(op.public, "riskpipe-test", {"type": "operator"})
        account = op.sign(
            self._account.public, "RISKPIPE",
            {"type": "account", "limits": {**_UNLIMITED, **_JETSTREAM}},
        )  # fmt: skip
        system = op.sign(self._system.public, "SYS", {"type": "account", "limits": _UNLIMITED})
        path.write_text(
            f"operator: {operator_jwt}\n"
            f"system_account: {self._system.public}\n"
            "resolver: MEMORY\n"
            f"resolver_preload: {{\n  {self._account.public}: {account}\n"
            f"  {self._system.public}: {system}\n}}\n"
            "jetstream: enabled\n"
        )
        return path

    def creds(self, path: Path, name: str, publish: list[str] | None = None) -> Path:
        """Write a ``.creds`` file for a user of ``RISKPIPE``, limited to ``publish`` if given."""
        user = _Key.new(nkeys.PREFIX_BYTE_USER)
        claims: dict[str, Any] = {"type": "user", "subs": -1, "data": -1, "payload": -1}
        if publish is not None:
            claims |= {"pub": {"allow": publish}, "sub": {"allow": ["_INBOX.>"]}}
        jwt = self._account.sign(user.public, name, claims)
        path.write_text(
            f"-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n"
            "************************* IMPORTANT *************************\n"
            "NKEY Seed printed below can be used to sign and prove identity.\n\n"
            f"-----BEGIN USER NKEY SEED-----\n{user.seed.decode()}\n"
            "------END USER NKEY SEED------\n"
        )
        return path
