"""Provisioning: create missing streams and buckets, report the ones that drifted."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from eventstore._topology import PARTITIONS_KEY
from eventstore.errors import ConfigDriftError, PartitionsMismatchError

if TYPE_CHECKING:
    from eventstore._jetstream._client import JetStreamClient
    from eventstore._topology import StoreConfig

__all__ = ["ProvisionReport", "provision", "recorded_partitions"]

# Fields compared to detect drift; the server fills in others we do not manage.
_MANAGED = (
    "subjects", "retention", "storage", "discard", "num_replicas", "duplicate_window",
    "max_msg_size", "max_msgs_per_subject", "max_age", "deny_delete", "deny_purge",
    "allow_rollup_hdrs", "allow_msg_ttl", "allow_atomic", "allow_direct", "subject_transform",
)  # fmt: skip


@dataclass
class ProvisionReport:
    """What provisioning created, found as expected, and found drifted."""

    created: list[str] = field(default_factory=list)
    found: list[str] = field(default_factory=list)
    drifted: list[ConfigDriftError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing drifted."""
        return not self.drifted


async def provision(client: JetStreamClient, config: StoreConfig) -> ProvisionReport:
    """Create what is missing and compare what exists with ``config``; change nothing else."""
    report = ProvisionReport()
    for want in config.stream_configs():
        name = want["name"]
        info = await client.stream_info(name)
        if info is None:
            await client.api(f"STREAM.CREATE.{name}", want)
            report.created.append(name)
            continue
        if config.partitioned is not None and name == config.partitioned.name:
            found = recorded_partitions(info["config"])
            if found != config.partitions:
                report.drifted.append(PartitionsMismatchError(name, found, config.partitions))
                continue
        diff = _drift(info["config"], want)
        if diff:
            report.drifted.append(ConfigDriftError(name, diff))
        else:
            report.found.append(name)
    return report


def _drift(found: dict[str, Any], want: dict[str, Any]) -> dict[str, tuple[object, object]]:
    diff = {}
    for key in _MANAGED:
        if key not in want:
            continue
        have = found.get(key, False if isinstance(want[key], bool) else None)
        if have != want[key]:
            diff[key] = (have, want[key])
    return diff


def recorded_partitions(stream_config: dict[str, Any]) -> int | None:
    """P as ``riskpipe init`` recorded it on the partitioned stream (``None``: made before)."""
    metadata = stream_config.get("metadata") or {}
    recorded = metadata.get(PARTITIONS_KEY)
    if not isinstance(recorded, str) or not recorded.isdecimal():
        return None
    return int(recorded)
