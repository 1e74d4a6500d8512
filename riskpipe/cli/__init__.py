"""The ``riskpipe`` command line. Each command lives in its own module."""

from riskpipe.cli import (  # noqa: F401 - importing registers their commands
    _analyze,
    _api,
    _audit,
    _bench,
    _bench_api,
    _bench_learn,
    _chaos,
    _config,
    _demo,
    _dlq,
    _explain,
    _learn,
    _migrate,
    _ops,
    _readmodel,
    _review,
    _server,
    _shadow,
    _store,
    _worker,
)
from riskpipe.cli._app import main

__all__ = ["main"]
