"""riskpipe's composition root: settings, CLI, observability and wiring."""

__all__: list[str] = []
