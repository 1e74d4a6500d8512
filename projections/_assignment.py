"""Which member should own which partition: deterministic, balanced, mostly stable.

Every worker computes the same answer from the same set of live members, so
no coordinator is needed: each one acquires what the answer gives it and
releases the rest. Balanced: of W members, each targets ``P // W`` or
``P // W + 1`` partitions. Mostly stable: a pair's place in the order is its
rendezvous hash, so a member joining or leaving moves about ``P / W``
partitions, not all of them (as dealing them round robin would).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["assign"]


def _weight(member: str, partition: int) -> bytes:
    return hashlib.blake2b(f"{member}/{partition}".encode(), digest_size=8).digest()


def assign(members: Iterable[str], partitions: int) -> dict[str, frozenset[int]]:
    """The partitions ``0 .. partitions - 1`` dealt to ``members``, the same for every caller.

    Pairs (member, partition) are taken heaviest first; a pair is kept while its
    partition is free and its member below capacity. The first ``P % W``
    members in sorted order may take one more than the others.

    Raises:
        ValueError: no members, or fewer than one partition.
    """
    ordered = sorted(set(members))
    if not ordered:
        raise ValueError("cannot assign partitions to no members")
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, not {partitions}")
    base, extra = divmod(partitions, len(ordered))
    capacity = {m: base + (1 if i < extra else 0) for i, m in enumerate(ordered)}
    pairs = sorted(
        ((m, p) for m in ordered for p in range(partitions)),
        key=lambda pair: _weight(*pair),
        reverse=True,
    )
    owner: dict[int, str] = {}
    for member, partition in pairs:
        if partition not in owner and capacity[member] > 0:
            owner[partition] = member
            capacity[member] -= 1
    dealt: dict[str, set[int]] = {m: set() for m in ordered}
    for partition, member in owner.items():
        dealt[member].add(partition)
    return {m: frozenset(ps) for m, ps in dealt.items()}
