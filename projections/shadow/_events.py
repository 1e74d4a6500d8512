"""Shadow runs: a proposed analyzer config scoring the live evidence beside the live one.

A shadow run's assessments are not live assessments: they live in their own
stream (``SHADOW``), on subjects that name the config version
(``<prefix>.shadow.<version>.<tenant>.<entity>``), under their own type
(``riskpipe.risk.shadow_assessed.v1``) with the data of a live assessment
(:class:`~projections.risk.RiskAssessedData`), so the tools that read one read
the other. Nothing reads them to open review cases or to serve the API.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from eventstore import StreamSpec, validate_token
from projections.risk import AssessmentOutput, RiskAssessedData

if TYPE_CHECKING:
    from eventstore import EventSchemas, StoreConfig

__all__ = [
    "SHADOW_ASSESSED",
    "SHADOW_STREAM",
    "InvalidShadowVersionError",
    "register_shadow_types",
    "shadow_filter",
    "shadow_output",
    "shadow_projection",
]

SHADOW_ASSESSED = "riskpipe.risk.shadow_assessed.v1"
SHADOW_STREAM = StreamSpec(category="shadow", name="SHADOW", atomic=True, payload_factor=2)
"""Shadow assessments, one per evidence and config version:
``<prefix>.shadow.<version>.<tenant>.<entity>``, immutable."""
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_PROJECTION_PREFIX = "shadow-"


class InvalidShadowVersionError(ValueError):
    """A config version name that cannot name a shadow run (not a subject token)."""

    def __init__(self, version: str) -> None:
        super().__init__(
            f"{version!r} is not a config version name: letters, digits, '_' and '-',"
            " 1 to 64 characters, starting with a letter or digit"
        )
        self.version = version


def _checked(version: str) -> str:
    if not _VERSION.fullmatch(version):
        raise InvalidShadowVersionError(version)
    return version


def shadow_output(version: str) -> AssessmentOutput:
    """Where the shadow run of config ``version`` writes its assessments.

    Raises:
        InvalidShadowVersionError: ``version`` is not a valid version name.
    """
    return AssessmentOutput(
        category=SHADOW_STREAM.category, type=SHADOW_ASSESSED, scope=_checked(version)
    )


def shadow_projection(version: str) -> str:
    """The projection name of the shadow run of ``version``: ``shadow-<version>``.

    Its consumers are ``shadow-<version>-<p>`` on EVIDENCE, its leases
    ``shadow-<version>.<p>``, its dead letters ``<prefix>.dlq.shadow-<version>.>``.

    Raises:
        InvalidShadowVersionError: ``version`` is not a valid version name.
    """
    return f"{_PROJECTION_PREFIX}{_checked(version)}"


def shadow_filter(config: StoreConfig, version: str, tenant: str | None = None) -> str:
    """The subjects of one shadow run's assessments (of one tenant, with ``tenant``).

    Raises:
        InvalidShadowVersionError: ``version`` is not a valid version name.
        ValueError: ``tenant`` is not a valid token.
    """
    base = f"{config.prefix}.{SHADOW_STREAM.category}.{_checked(version)}"
    if tenant is None:
        return f"{base}.>"
    return f"{base}.{validate_token(tenant, what='tenant')}.>"


def register_shadow_types(schemas: EventSchemas) -> None:
    """Register the shadow assessment type (in the ``shadow`` category)."""
    schemas.register(SHADOW_ASSESSED, RiskAssessedData, category=SHADOW_STREAM.category)
