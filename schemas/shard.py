"""fleetrun.shard/1: one slice of a request too large for one collector.

The collector that receives a request with more targets than its shard size splits the expanded
targets into shards and writes them to the shards topic, which every collector of the group
consumes: each shard runs where its partition is owned, publishing the request's results under
the request's own request_id. Shards are written by collectors only (Kafka ACLs); other teams
read them to follow a big request, never write them.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Final

from msgspec import Meta, Struct

from schemas import limits
from schemas.errors import SchemaError
from schemas.fields import HostCount, Instance, TargetExpression, Timestamp, Uuid
from schemas.patterns import check_patterns, plan
from schemas.timestamps import parse_timestamp

SHARD_SCHEMA: Final = "fleetrun.shard/1"
# The request record rides along as the text the requester wrote, so its content digest (and
# a signature over it) stays what it was.
MAX_REQUEST_RECORD_CHARS: Final = 1_048_576

ShardIndex = Annotated[int, Meta(ge=0, le=limits.MAX_TARGETS)]
ShardCount = Annotated[int, Meta(ge=1, le=limits.MAX_TARGETS)]
ShardTargets = Annotated[
    tuple[TargetExpression, ...], Meta(min_length=1, max_length=limits.MAX_TARGETS)
]
RequestRecord = Annotated[str, Meta(min_length=2, max_length=MAX_REQUEST_RECORD_CHARS)]


class Shard(Struct, frozen=True, kw_only=True, gc=False, tag_field="schema", tag=SHARD_SCHEMA):
    """fleetrun.shard/1: run request `request_id` on `targets`, shard `index` of `count`."""

    SCHEMA: ClassVar[str] = SHARD_SCHEMA

    request_id: Uuid
    index: ShardIndex
    count: ShardCount
    targets_total: HostCount  # of the whole request: what its error budget is a share of
    targets: ShardTargets  # expanded and de-duplicated: one host each, in the request's order
    request: RequestRecord  # the fleetrun.request/1 record, as consumed
    collector: Instance  # the collector that split the request (it reports `completed`)
    created_at: Timestamp

    def __post_init__(self) -> None:
        check_patterns(self, _SHARD_CHECKS)
        parse_timestamp(self.created_at, "created_at")
        if self.index >= self.count:
            last = self.count - 1
            problem = f"is {self.index}; a request of {self.count} shards has 0…{last}"
            raise SchemaError("index", problem, "shard")

    @property
    def shard_id(self) -> str:
        """`<request_id>:<index>`: the shard's Kafka key and its key in the shards' ledger."""
        return f"{self.request_id}:{self.index}"


_SHARD_CHECKS: Final = plan(Shard)
