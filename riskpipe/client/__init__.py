"""Record evidence from your own service: riskpipe's producer client.

``Producer`` (asyncio) and ``SyncProducer`` (scripts, threads, sync web apps)
check every observation (and outcome) exactly as ``riskpipe publish`` checks a line, and
store it once however often it is recorded. See docs/producers.md.
"""

from eventstore.errors import (
    AuthenticationError,
    CredentialsError,
    DecodeError,
    EventStoreError,
    NotProvisionedError,
    PermissionDeniedError,
    StoreUnavailableError,
)
from riskpipe.client._observation import Observation, Outcome, Recorded, Rejected
from riskpipe.client._producer import DEFAULT_URL, Producer
from riskpipe.client._sync import SyncProducer

__all__ = [
    "DEFAULT_URL",
    "AuthenticationError",
    "CredentialsError",
    "DecodeError",
    "EventStoreError",
    "NotProvisionedError",
    "Observation",
    "Outcome",
    "PermissionDeniedError",
    "Producer",
    "Recorded",
    "Rejected",
    "StoreUnavailableError",
    "SyncProducer",
]
