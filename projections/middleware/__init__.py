"""Middlewares around a projection handler, one concern each.

A middleware takes a handler and returns a handler. The usual chain, outermost
first: :func:`tracing`, :func:`log_context`, :func:`dead_letters`,
:func:`pause_on_open_breaker`, :func:`retry`, :func:`timeout`.
"""

from projections._message import Handler, Middleware
from projections.middleware._deadletter import dead_letters
from projections.middleware._logging import log_context
from projections.middleware._pause import pause_on_open_breaker
from projections.middleware._retry import retry
from projections.middleware._timeout import timeout
from projections.middleware._tracing import tracing

__all__ = [
    "chain",
    "dead_letters",
    "log_context",
    "pause_on_open_breaker",
    "retry",
    "timeout",
    "tracing",
]


def chain(handler: Handler, *middlewares: Middleware) -> Handler:
    """Wrap ``handler`` so that the first middleware is the outermost."""
    for middleware in reversed(middlewares):
        handler = middleware(handler)
    return handler
