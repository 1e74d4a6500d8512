"""``riskpipe worker`` start-up errors: one line in the log's format, and a non-zero exit."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from support.cli import riskpipe
from support.tools import require_tool

if TYPE_CHECKING:
    import subprocess

    from riskpipe.server import NatsServer


def _worker(
    env: dict[str, str],
    *,
    log_format: str = "json",
    http_port: int = 0,
    prefix: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """Run ``riskpipe worker --until-idle`` with only ``env`` as its RISKPIPE_* environment."""
    return riskpipe(
        "worker", "--until-idle", "--http-port", str(http_port),
        env={"RISKPIPE_FETCH_TIMEOUT": "0.2", **env}, log_format=log_format, prefix=prefix,
    )  # fmt: skip


def _one_json_line(result: subprocess.CompletedProcess[str], code: int) -> dict[str, Any]:
    """The single stderr line of a failed start, parsed; the exit code checked."""
    assert result.returncode == code, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    line: dict[str, Any] = orjson.loads(lines[0])
    assert line["level"] == "error"
    return line


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("missing.toml", None, "cannot read the file"),
        ("broken.toml", "version = [\n", "not valid TOML"),
        ("broken.yaml", "version: [\n  - x\n", "not valid YAML"),
        ("invalid.toml", 'colour = "red"\n', "colour: Extra inputs are not permitted"),
        ("config.json", "{}", "use a .toml, .yaml or .yml file"),
    ],
    ids=["missing", "unparsable-toml", "unparsable-yaml", "invalid", "wrong-suffix"],
)
def test_a_bad_analyzer_config_is_one_json_line(
    nats_server: NatsServer, tmp_path: Path, name: str, text: str | None, expected: str
) -> None:
    """A bad RISKPIPE_ANALYZER_CONFIG exits 1 with one JSON line naming the file and problem."""
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    result = _worker({"RISKPIPE_NATS_URL": nats_server.url, "RISKPIPE_ANALYZER_CONFIG": str(path)})
    line = _one_json_line(result, 1)
    assert line["event"] == "worker.failed"
    assert line["error"].startswith(f"invalid analyzer config {path}: ")
    assert expected in line["error"]


def test_a_busy_http_port_is_one_json_line(nats_server: NatsServer) -> None:
    """A --http-port another process listens on exits 1 with one JSON line naming the address."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = _worker({"RISKPIPE_NATS_URL": nats_server.url}, http_port=port)
    line = _one_json_line(result, 1)
    assert line["event"] == "worker.failed"
    assert line["error"] == f"cannot serve HTTP on 127.0.0.1:{port}: address already in use"


def _unprivileged() -> tuple[str, ...]:
    """A command prefix that runs a process without the right to bind ports below 1024."""
    start = Path("/proc/sys/net/ipv4/ip_unprivileged_port_start")
    if start.exists() and int(start.read_text()) <= 80:
        pytest.skip("anyone may bind port 80 on this machine")
    if os.geteuid() != 0:
        return ()
    setpriv = require_tool("setpriv")  # as root: drop the capability to bind low ports
    return (setpriv, "--bounding-set", "-net_bind_service", "--inh-caps", "-net_bind_service")


def test_a_privileged_http_port_is_one_json_line(nats_server: NatsServer) -> None:
    """Port 80 without the privilege exits 1 with one JSON line saying why."""
    result = _worker({"RISKPIPE_NATS_URL": nats_server.url}, http_port=80, prefix=_unprivileged())
    line = _one_json_line(result, 1)
    assert line["error"] == (
        "cannot serve HTTP on 127.0.0.1:80: permission denied (ports below 1024 need privileges)"
    )


def test_an_http_host_not_on_this_machine_is_one_json_line(nats_server: NatsServer) -> None:
    """An RISKPIPE_HTTP_HOST that is no local address exits 1 with one JSON line."""
    env = {"RISKPIPE_NATS_URL": nats_server.url, "RISKPIPE_HTTP_HOST": "192.0.2.1"}
    line = _one_json_line(_worker(env), 1)
    assert line["error"] == "cannot serve HTTP on 192.0.2.1:0: cannot assign requested address"


def test_an_unreachable_nats_server_is_one_json_line() -> None:
    """No NATS server at the URL exits 1 with one JSON line (no traceback)."""
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        url = f"nats://127.0.0.1:{probe.getsockname()[1]}"
    line = _one_json_line(_worker({"RISKPIPE_NATS_URL": url}), 1)
    assert line["error"].startswith(f"cannot connect to NATS at {url}")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"RISKPIPE_BATCH": "zero"}, "RISKPIPE_BATCH: Input should be a valid integer"),
        ({"RISKPIPE_HTTP_PORT": "70000"}, "RISKPIPE_HTTP_PORT: Input should be less than"),
        ({"RISKPIPE_LOG_LEVEL": "loud"}, "RISKPIPE_LOG_LEVEL: Input should be 'debug'"),
        ({"RISKPIPE_ENRICHMENT_URL": "reputation:8080"}, "RISKPIPE_ENRICHMENT_URL: String should"),
        ({"RISKPIPE_OTLP_ENDPOINT": "collector:4318"}, "RISKPIPE_OTLP_ENDPOINT: String should"),
        (
            {"RISKPIPE_NATS_URL": "nats://worker:s3cret@127.0.0.1:99999"},
            "'nats://***@127.0.0.1:99999': the port must be a number from 0 to 65535",
        ),
        ({"RISKPIPE_NATS_URL": "http://127.0.0.1:4222"}, "the scheme must be one of nats"),
    ],
    ids=["integer", "range", "choice", "enrichment-url", "otlp-url", "nats-port", "nats-scheme"],
)
def test_an_invalid_setting_is_one_json_line(env: dict[str, str], expected: str) -> None:
    """An invalid RISKPIPE_* value exits 2 with one JSON line naming the variable, no value."""
    line = _one_json_line(_worker(env), 2)
    assert line["event"] == "settings.invalid"
    assert expected in line["error"]
    assert "s3cret" not in line["error"]


def test_a_misspelt_variable_is_an_error_with_a_suggestion(nats_server: NatsServer) -> None:
    """RISKPIPE_NATS_ULR exits 2 with one JSON line suggesting RISKPIPE_NATS_URL."""
    env = {"RISKPIPE_NATS_URL": nats_server.url, "RISKPIPE_NATS_ULR": nats_server.url}
    line = _one_json_line(_worker(env), 2)
    assert line["event"] == "settings.misspelt"
    assert line["error"] == (
        "unknown environment variable RISKPIPE_NATS_ULR (did you mean RISKPIPE_NATS_URL?)"
    )


def test_an_unknown_variable_is_a_warning(nats_server: NatsServer) -> None:
    """A RISKPIPE_* name close to no setting is one warning line, and the worker runs."""
    env = {"RISKPIPE_NATS_URL": nats_server.url, "RISKPIPE_IMAGE_TAG": "v1"}
    result = _worker(env)
    assert result.returncode == 0, result.stderr
    lines = [orjson.loads(line) for line in result.stderr.splitlines()]
    warnings = [line for line in lines if line["level"] == "warning"]
    assert [(w["event"], w["warning"]) for w in warnings] == [
        ("settings.unknown_variable", "unknown environment variable RISKPIPE_IMAGE_TAG; ignored")
    ]
    assert "projection.stopped" in {line["event"] for line in lines}


def test_console_format_is_one_plain_line(tmp_path: Path, nats_server: NatsServer) -> None:
    """Under --log-format console the same error is one line of text, not JSON."""
    env = {
        "RISKPIPE_NATS_URL": nats_server.url,
        "RISKPIPE_ANALYZER_CONFIG": str(tmp_path / "broken.yaml"),
    }
    (tmp_path / "broken.yaml").write_text("version: [\n  - x\n")  # YAML's message spans lines
    result = _worker(env, log_format="console")
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "worker.failed" in result.stderr
    assert "not valid YAML" in result.stderr
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(result.stderr)
