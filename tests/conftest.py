"""Fixtures shared by every test."""

pytest_plugins = ("support.cli", "support.nats", "support.reputation_server")
