"""Fixtures shared by every test."""

pytest_plugins = (
    "pytester",
    "support.cli",
    "support.nats",
    "support.postgres",
    "support.reputation_server",
)
