"""Tokens: made once, stored hashed (0600), checked at start; and the API served for real."""

from __future__ import annotations

import stat
from typing import TYPE_CHECKING

import httpx
import pytest
import yaml
from support.api import ApiProcess
from support.cli import riskpipe

from riskpipe.api import TokensFileError, add_token, hash_token, load_tokens

if TYPE_CHECKING:
    from pathlib import Path

    from eventstore import EventStore
    from riskpipe.server import NatsServer


def test_add_token_prints_it_once_and_stores_only_its_hash(tmp_path: Path) -> None:
    """The token goes to stdout alone; the file has its SHA-256, never the token; mode 0600."""
    path = tmp_path / "conf" / "tokens.yaml"
    made = riskpipe(
        "api", "add-token", "alice", "--role", "operator", "--tenant", "acme",
        "--tenant", "globex", "--tokens", str(path),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert len(token) >= 40
    assert "\n" not in token
    assert token not in made.stderr
    text = path.read_text()
    assert token not in text
    assert yaml.safe_load(text) == [
        {
            "name": "alice",
            "role": "operator",
            "tenants": ["acme", "globex"],
            "token_sha256": hash_token(token),
        }
    ]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = riskpipe(
        "api", "add-token", "bob", "--role", "admin", "--tenant", "*", "--tokens", str(path)
    )
    assert second.returncode == 0, second.stderr
    principal = load_tokens(path).authenticate(token)
    assert principal is not None
    assert (principal.name, principal.role, principal.tenants) == (
        "alice",
        "operator",
        frozenset({"acme", "globex"}),
    )
    bob = load_tokens(path).authenticate(second.stdout.strip())
    assert bob is not None
    assert bob.all_tenants
    assert load_tokens(path).authenticate(token + "x") is None


def test_add_token_keeps_the_files_comments(tmp_path: Path) -> None:
    """A hand-written file keeps its comments and entries; the new entry is appended."""
    path = tmp_path / "tokens.yaml"
    path.write_text("# the ops team\n- name: carol\n  role: auditor\n  tenants: ['*']\n"
                    f"  token_sha256: {hash_token('carol-token')}\n")  # fmt: skip
    add_token(path, "dave", "reviewer", ["acme"])
    text = path.read_text()
    assert text.startswith("# the ops team\n- name: carol\n")
    assert [e.name for e in load_tokens(path).entries] == ["carol", "dave"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("alice", "--role", "admin", "--tenant", "acme"), "a token named 'alice' exists already"),
        (("erin", "--role", "root", "--tenant", "acme"), "unknown role 'root'"),
        (("erin", "--role", "admin", "--tenant", "ac.me"), "invalid tenant 'ac.me'"),
        (("erin", "--role", "admin", "--tenant", "*", "--tenant", "acme"), "every tenant"),
        (("erin smith", "--role", "admin", "--tenant", "acme"), "name"),
    ],
)
def test_add_token_refuses_clearly(tmp_path: Path, args: tuple[str, ...], says: str) -> None:
    """A duplicate name, an unknown role, an invalid tenant: one line, exit 1, file unchanged."""
    path = tmp_path / "tokens.yaml"
    add_token(path, "alice", "operator", ["acme"])
    before = path.read_text()
    refused = riskpipe("api", "add-token", *args, "--tokens", str(path))
    assert refused.returncode == 1, refused
    assert says in refused.stderr
    assert refused.stdout == ""
    assert path.read_text() == before


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("- name: a\n  role: admin\n  tenants: [acme]\n", "entry 1 (name 'a'): token_sha256"),
        (
            (
                f"- name: a\n  role: admin\n  tenants: [acme]\n  token_sha256: '{'0' * 64}'\n"
                f"- name: b\n  role: boss\n  tenants: [acme]\n  token_sha256: '{'1' * 64}'\n"
            ),
            "entry 2 (name 'b'): role",
        ),
        (
            (
                f"- name: a\n  role: admin\n  tenants: [acme]\n  token_sha256: '{'0' * 64}'\n"
                f"- name: a\n  role: admin\n  tenants: [acme]\n  token_sha256: '{'1' * 64}'\n"
            ),
            "entry 2 (name 'a'): the name 'a' is used twice",
        ),
        ("- name: a\n  role: admin\n  tenants: [a.b]\n", "entry 1 (name 'a'): tenants"),
        ("- [unclosed\n", "not valid YAML at line"),
        ("name: a\n", "must be a YAML list"),
        ("", "holds no token"),
    ],
)
def test_a_malformed_tokens_file_stops_the_api_naming_file_and_entry(
    tmp_path: Path, nats_server: NatsServer, text: str, says: str
) -> None:
    """``riskpipe api`` exits 1 with one line naming the file and the entry."""
    path = tmp_path / "tokens.yaml"
    path.write_text(text)
    with pytest.raises(TokensFileError, match="tokens file"):
        load_tokens(path)
    started = riskpipe("api", "--port", "0", "--tokens", str(path),
                       env={"RISKPIPE_NATS_URL": nats_server.url})  # fmt: skip
    assert started.returncode == 1
    assert f"tokens file {path}: " in started.stderr
    assert says in started.stderr


def test_a_missing_tokens_file_stops_the_api(tmp_path: Path) -> None:
    """No tokens file: exit 1, saying how to make one (before NATS is even tried)."""
    started = riskpipe("api", "--tokens", str(tmp_path / "none.yaml"))
    assert started.returncode == 1
    assert "riskpipe api add-token" in started.stderr


async def test_a_token_from_add_token_works_on_the_live_api(
    tmp_path: Path, nats_server: NatsServer, store: EventStore
) -> None:
    """add-token, start ``riskpipe api`` (uvicorn on loopback), and use the printed token."""
    assert store.config.prefix  # the store fixture provisioned the streams
    path = tmp_path / "tokens.yaml"
    made = riskpipe("api", "add-token", "ops", "--role", "operator", "--tenant", "acme",
                    "--tokens", str(path))  # fmt: skip
    token = made.stdout.strip()
    api = ApiProcess(nats_server.url, path)
    try:
        async with httpx.AsyncClient(base_url=api.url) as http:
            me = await http.get("/api/whoami", headers={"Authorization": f"Bearer {token}"})
            assert me.status_code == 200
            assert me.json()["name"] == "ops"
            letters = await http.get(
                "/api/dead-letters", headers={"Authorization": f"Bearer {token}"}
            )
            assert letters.json() == {"items": [], "next_cursor": None}
            nobody = await http.get("/api/whoami", headers={"Authorization": "Bearer nope"})
            assert nobody.status_code == 401
            spec = await http.get("/openapi.json")
            assert "/api/dead-letters/{sequence}/replay" in spec.json()["paths"]
            metrics = await http.get("/metrics")
            assert (
                'riskpipe_api_requests_total{method="GET",route="/api/whoami",status="200"} 1.0'
                in metrics.text
            )
    finally:
        assert api.stop() == 0
    lines = [r for r in api.log if r.get("event") == "api.request"]
    assert {(r["route"], r["status"]) for r in lines} >= {
        ("/api/whoami", 200),
        ("/api/whoami", 401),
    }
    assert not any(token in str(r) or "nope" in str(r) for r in api.log)
    assert any(r.get("event") == "api.stopped" for r in api.log)


def test_the_api_stops_cleanly_while_nats_is_down(
    tmp_path: Path, nats_server: NatsServer, store: EventStore
) -> None:
    """SIGTERM while the server is gone: ``riskpipe api`` still exits 0."""
    assert store.config.prefix  # the store fixture provisioned the streams
    path = tmp_path / "tokens.yaml"
    add_token(path, "ops", "operator", ["*"])
    api = ApiProcess(nats_server.url, path)
    nats_server.kill()
    assert api.stop() == 0, api.log[-5:]
    assert any(r.get("event") == "api.stopped" for r in api.log)
