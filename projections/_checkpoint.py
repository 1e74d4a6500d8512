"""A projection's checkpoint as the KV bucket holds it, used only once validated.

Anyone who may write the bucket (the worker's user, or on the unauthenticated
server any client, and nats-server itself when a message names the key as its
``Nats-Trace-Dest``) can put any bytes under the key. So a stored checkpoint is
a claim to check, not a fact: it must be a :class:`CheckpointRecord`, of this
generation of the stream (the stream's creation time: a stream deleted and
created again is another stream whose sequences start over), and within the
stream. Anything else is refused, and the runner starts without it: the
durable consumer keeps its own acknowledgement floor, and the risk projection's
fence and cursor make anything delivered again a duplicate, so a refused
checkpoint costs at most a re-read, never an evidence skipped or scored twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from eventstore.errors import NotProvisionedError
from projections.errors import CheckpointRefusedError

if TYPE_CHECKING:
    from eventstore import EventStore

__all__ = ["Checkpoint", "CheckpointRecord", "RefusalReason", "read_checkpoint"]

RefusalReason = Literal["malformed", "no_generation", "other_generation", "beyond_stream"]


class CheckpointRecord(BaseModel):
    """The value stored under a projection's key: its consumer's ack floor, and of which stream."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    sequence: int = Field(ge=0)
    generation: str | None = Field(default=None, min_length=1, max_length=64)
    """The stream's creation time as its info gives it; ``None`` in records written before it."""
    written_at: float | None = None

    def encoded(self) -> bytes:
        """The bytes to store."""
        return orjson.dumps(self.model_dump())

    @classmethod
    def of(cls, sequence: int, generation: str) -> CheckpointRecord:
        """A record of ``sequence`` in stream generation ``generation``, written now."""
        return cls(sequence=sequence, generation=generation, written_at=time.time())


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A stored checkpoint as checked against its stream.

    ``sequence`` is 0 when there is none or it was refused (``refused`` says
    why); ``revision`` is the key's current revision whatever it holds (0:
    none), for a compare-and-set that replaces it.
    """

    sequence: int
    revision: int
    generation: str
    last_seq: int
    refused: CheckpointRefusedError | None = None
    record: CheckpointRecord | None = None


async def read_checkpoint(
    store: EventStore, projection: str, stream: str, *, leader: bool = False
) -> Checkpoint:
    """The checkpoint of ``projection`` over ``stream``, validated (see the module).

    Any replica of the bucket may answer, with an older value while it catches
    up (safe for a writer: its compare-and-set then fails); ``leader`` asks the
    bucket's leader, for a reader that must never see one go back.

    Raises:
        NotProvisionedError: the stream does not exist.
    """
    info = await store.client.stream_info(stream)
    if info is None:
        raise NotProvisionedError(f"stream {stream} does not exist; run `riskpipe init`")
    generation, last_seq = str(info["created"]), int(info["state"]["last_seq"])
    entry = await store.kv(store.config.checkpoint_bucket).get(projection, leader=leader)
    if entry is None:
        return Checkpoint(0, 0, generation, last_seq)
    try:
        record = CheckpointRecord.model_validate_json(entry.value)
        _check(projection, record, generation, last_seq)
    except CheckpointRefusedError as exc:
        return Checkpoint(0, entry.revision, generation, last_seq, refused=exc)
    except ValidationError as exc:
        detail = f"not a checkpoint record: {_first_error(exc)}"
        refused = CheckpointRefusedError(projection, "malformed", detail)
        return Checkpoint(0, entry.revision, generation, last_seq, refused=refused)
    return Checkpoint(record.sequence, entry.revision, generation, last_seq, record=record)


def _check(projection: str, record: CheckpointRecord, generation: str, last_seq: int) -> None:
    if record.generation is None:
        raise CheckpointRefusedError(
            projection,
            "no_generation",
            "written before checkpoints named their stream's generation",
        )
    if record.generation != generation:
        raise CheckpointRefusedError(
            projection,
            "other_generation",
            f"written for the stream created at {record.generation}, this one was created"
            f" at {generation} (deleted and created again)",
        )
    if record.sequence > last_seq:
        raise CheckpointRefusedError(
            projection,
            "beyond_stream",
            f"sequence {record.sequence} is past the stream's last sequence {last_seq}",
        )


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "value"
    return f"{where}: {first['msg']}"[:200]
