"""Shadow runs: a proposed analyzer config scoring live evidence, and their comparison with live."""

from projections.shadow._events import (
    SHADOW_ASSESSED,
    SHADOW_STREAM,
    InvalidShadowVersionError,
    register_shadow_types,
    shadow_filter,
    shadow_output,
    shadow_projection,
)
from projections.shadow._report import (
    EntityChange,
    ShadowNotRunError,
    ShadowReport,
    shadow_report,
)

__all__ = [
    "SHADOW_ASSESSED",
    "SHADOW_STREAM",
    "EntityChange",
    "InvalidShadowVersionError",
    "ShadowNotRunError",
    "ShadowReport",
    "register_shadow_types",
    "shadow_filter",
    "shadow_output",
    "shadow_projection",
    "shadow_report",
]
