"""Splitting a big request into shards: pure rules (sizes, slices, placement), no Kafka.

A request whose plan has more hosts than the shard size becomes `ceil(total / size)` shards of
near-equal size (the sizes differ by one at most, so no shard is a small straggler), each a
slice of the plan in target order. Shard i goes to partition i modulo the shards topic's
partition count: consecutive shards land on different partitions, hence on different
collectors of the group, rather than wherever their keys happen to hash.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from collector.fanout import H, Plan, PlannedHost
from schemas import Request, Shard, format_timestamp


def shard_count(total: int, size: int) -> int:
    """How many shards `total` hosts make at `size` hosts each at most (0: not sharded)."""
    if size <= 0 or total <= size:
        return 0
    return -(-total // size)


def slices(total: int, count: int) -> list[range]:
    """`count` consecutive ranges over 0…total-1 whose lengths differ by one at most."""
    base, extra = divmod(total, count)
    out: list[range] = []
    start = 0
    for i in range(count):
        end = start + base + (1 if i < extra else 0)
        out.append(range(start, end))
        start = end
    return out


def target_text(planned: PlannedHost[H]) -> str:
    """The host as a target expression its shard plans again (`[user@]host[:port]`)."""
    return str(planned.target)


def split(
    request: Request,
    record_text: str,
    plan: Plan[H],
    size: int,
    *,
    collector: str,
    now: datetime,
) -> list[Shard]:
    """The shards of `plan` (none when it fits in one shard)."""
    count = shard_count(plan.total, size)
    created_at = format_timestamp(now)
    return [
        Shard(
            request_id=request.request_id,
            index=index,
            count=count,
            targets_total=plan.total,
            targets=tuple(target_text(plan.hosts[i]) for i in part),
            request=record_text,
            collector=collector,
            created_at=created_at,
        )
        for index, part in enumerate(slices(plan.total, count))
    ]


def partition_of(index: int, partitions: Sequence[int]) -> int:
    """The shards-topic partition of shard `index`: round robin over the partitions."""
    ordered = sorted(partitions)
    return ordered[index % len(ordered)]
