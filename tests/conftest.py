"""Fixtures shared by every test."""

pytest_plugins = ("pytester", "support.cli", "support.nats", "support.reputation_server")
