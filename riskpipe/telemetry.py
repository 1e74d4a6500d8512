"""Observability setup: the OpenTelemetry SDK (only configured here) and worker gauges."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

if TYPE_CHECKING:
    from riskpipe.settings import Settings

__all__ = ["TracesExporter", "configure_tracing"]

TracesExporter = Literal["none", "console", "otlp"]
_configured = False


def _exporter(settings: Settings) -> SpanExporter | None:
    if settings.traces_exporter == "console":
        return ConsoleSpanExporter()
    if settings.traces_exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415 - optional, heavy
            OTLPSpanExporter,
        )

        return (
            OTLPSpanExporter(endpoint=settings.otlp_endpoint)
            if settings.otlp_endpoint
            else OTLPSpanExporter()
        )
    return None


def configure_tracing(settings: Settings, service: str) -> TracerProvider | None:
    """Install a tracer provider exporting spans as ``settings.traces_exporter`` says.

    With ``none`` (the default) nothing is installed: the libraries' spans stay
    no-ops and no trace headers are added to messages.
    """
    global _configured  # noqa: PLW0603 - the global tracer provider can be set once per process
    exporter = _exporter(settings)
    if exporter is None or _configured:
        return None
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _configured = True
    return provider
