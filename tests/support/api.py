"""The API's test set-up: a token per role and scope, dead letters of two tenants."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from riskpipe.api import ROLES, ApiRole, TokenTable, add_token, load_tokens
from support.pipeline import run_worker

if TYPE_CHECKING:
    from pathlib import Path

    from eventstore import EventStore

__all__ = [
    "LETTERS_PER_TENANT",
    "SCOPES",
    "ApiProcess",
    "Tokens",
    "make_dead_letters",
    "make_tokens",
]

SCOPES = ("acme", "*")
"""Every role gets a token of tenant acme, and one of every tenant."""
LETTERS_PER_TENANT = 9


@dataclass
class Tokens:
    """The tokens file, and each role and scope's token in plain text."""

    path: Path
    table: TokenTable
    plain: dict[tuple[ApiRole, str], str]

    def header(self, role: ApiRole, scope: str) -> dict[str, str]:
        """The ``Authorization`` header of the token of ``role`` and ``scope``."""
        return {"Authorization": f"Bearer {self.plain[role, scope]}"}


def make_tokens(path: Path) -> Tokens:
    """A tokens file with a token of each role for each of :data:`SCOPES`."""
    plain = {}
    for role in ROLES:
        for scope in SCOPES:
            name = f"{role}-{'all' if scope == '*' else scope}"
            plain[role, scope] = add_token(path, name, role, [scope])
    return Tokens(path, load_tokens(path), plain)


async def make_dead_letters(store: EventStore, url: str) -> dict[str, list[int]]:
    """Poison evidence of tenants acme and globex, dead-lettered by a real worker."""
    for tenant in ("acme", "globex"):
        for n in range(LETTERS_PER_TENANT):
            await store.append_unchecked(
                "evidence", tenant, f"user-{n}", b"{broken", msg_id=f"poison:{tenant}:{n}"
            )
    await run_worker(store, url)
    letters: dict[str, list[int]] = {"acme": [], "globex": []}
    async for rec in store.read_all(stream=store.config.stream_for("dlq")):
        assert rec.event is not None
        letters[rec.event.tenant].append(rec.sequence)
    assert all(len(seqs) == LETTERS_PER_TENANT for seqs in letters.values()), letters
    return letters


class ApiProcess:
    """``riskpipe api`` in a process of its own, on a free loopback port; stopped by PID."""

    def __init__(
        self, nats_url: str, tokens: Path, *args: str, env: dict[str, str] | None = None
    ) -> None:
        clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("RISKPIPE_")}
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "riskpipe", "--log-format", "json"),
                *("api", "--port", "0", "--tokens", str(tokens), *args),
            ],
            # the read model it follows lives beside the tokens file, not in the working tree
            env={
                **clean,
                "RISKPIPE_NATS_URL": nats_url,
                "RISKPIPE_DATA_DIR": str(tokens.parent / "api-data"),
                **(env or {}),
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log: list[dict[str, Any]] = []
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self.url = self._wait_serving()

    def _wait_serving(self) -> str:
        """The base URL once the process logs ``api.serving``.

        Raises:
            AssertionError: it exited first (with its log).
        """
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            record = json.loads(line)
            self.log.append(record)
            if record.get("event") == "api.serving":
                self._drainer.start()
                return f"http://{record['host']}:{record['port']}"
        code = self.proc.wait()
        self.proc.stderr.close()
        raise AssertionError(f"riskpipe api exited {code}: {self.log}")

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with contextlib.suppress(ValueError):
                self.log.append(json.loads(line))

    def stop(self) -> int:
        """SIGTERM, then its exit status (killed after 10 s)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._drainer.join(timeout=10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        return code
