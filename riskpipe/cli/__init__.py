"""The ``riskpipe`` command line. Each command lives in its own module."""

from riskpipe.cli import _analyze, _bench, _dlq, _ops, _server, _store, _worker  # noqa: F401 - importing registers their commands
from riskpipe.cli._app import main

__all__ = ["main"]
