"""Fixtures shared by every test."""

pytest_plugins = ("support.nats", "support.reputation_server")
