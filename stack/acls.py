"""Who may do what on the stack's Kafka: the ACLs of each fleetrun principal, created idempotently.

The broker's StandardAuthorizer denies whatever no ACL allows (`allow.everyone.if.no.acl.found`
stays false), and `admin` is the super user. What each principal needs, and why:

- collector: read requests (its consumer group), cancels and the ledger (replayed on
  assignment), shards and their ledger, results (a sharded request's coordinator counts them);
  write results, status, dlq, ledger, output, shards, the shard ledger and cancels (drains);
  its transactional ids (`<group>.<requests topic>.<partition>`, collector/lanes.py) by prefix.
- sink: read results and status (its consumer group); write dlq.
- web: read the topics it shows; write cancels: the console's cancel button (turn it off with
  FLEETRUN_WEB_ALLOW_CANCEL=false and drop that ACL for a read-only console).
- team: write requests and cancels; read results, status and output (`run --wait`, `tail`) and
  requests and status (`cancel` looks up the request first). The CLI reads without a group.

Read and Write imply Describe. Idempotent producers need only Write on the topic (Kafka ≥ 3.0).

aiokafka's admin client has no ACL call, but it speaks the protocol: CreateAcls (v1, the
prefixed patterns) is sent through a plain AIOKafkaClient, as fleetrun's probes do. Creating
an ACL that exists is a no-op on the broker, so `ensure_acls` is safe to run on every start.
One JVM per AclCommand call would add seconds to each stack start.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.admin import CreateAclsRequest, DeleteAclsRequest
from aiokafka.protocol.api import Request

# Kafka's wire codes (org.apache.kafka.common.acl / resource).
TOPIC, GROUP, TRANSACTIONAL_ID = 2, 3, 5
LITERAL, PREFIXED = 3, 4
READ, WRITE = 3, 4
ALLOW = 3


@dataclass(frozen=True, slots=True)
class Acl:
    """Allow `principal` to `operation` on a resource (name literal, or a prefix)."""

    principal: str
    resource_type: int
    name: str
    operation: int
    pattern: int = LITERAL

    def wire_filter(self) -> tuple[int, str, int, str, str]:
        """resource type, name, pattern type, principal, host: the fields CreateAcls and
        DeleteAcls share before the operation."""
        return self.resource_type, self.name, self.pattern, f"User:{self.principal}", "*"

    def __str__(self) -> str:
        kind = {TOPIC: "topic", GROUP: "group", TRANSACTIONAL_ID: "transactional-id"}
        op = {READ: "Read", WRITE: "Write"}[self.operation]
        star = "*" if self.pattern == PREFIXED else ""
        return f"User:{self.principal} {op} {kind[self.resource_type]} {self.name}{star}"


def fleetrun_acls(
    topic_prefix: str,
    *,
    collector_group: str = "fleetrun-collector",
    sink_group: str = "fleetrun-sink",
) -> list[Acl]:
    """Every ACL fleetrun's principals need, for topics under `topic_prefix`."""

    def topics(principal: str, operation: int, *names: str) -> list[Acl]:
        return [Acl(principal, TOPIC, topic_prefix + n, operation) for n in names]

    return [
        # Shards: every collector consumes and writes shard records and their ledger; a
        # request's coordinator reads its results back and sends drains (cancels).
        *topics(
            "collector", READ, "requests", "cancels", "ledger", "shards", "shard-ledger", "results"
        ),
        *topics(
            "collector",
            WRITE,
            *("results", "status", "dlq", "ledger", "output", "shards", "shard-ledger", "cancels"),
        ),
        # Prefixes: several collectors' groups may share a stem, and each partition has its
        # own transactional id under the group's name.
        Acl("collector", GROUP, collector_group, READ, PREFIXED),
        Acl("collector", TRANSACTIONAL_ID, collector_group, WRITE, PREFIXED),
        *topics("sink", READ, "results", "status"),
        *topics("sink", WRITE, "dlq"),
        Acl("sink", GROUP, sink_group, READ, PREFIXED),
        *topics("web", READ, "results", "status", "output", "requests", "cancels"),
        *topics("web", WRITE, "cancels"),
        *topics("team", WRITE, "requests", "cancels"),
        *topics("team", READ, "results", "status", "output", "requests"),
    ]


class AclError(Exception):
    """The broker refused to create an ACL."""


async def ensure_acls(kafka: Mapping[str, Any], acls: list[Acl], *, timeout_s: float) -> None:
    """Create every ACL in `acls` (as the super user `kafka` connects as); idempotent."""
    requests = [CreateAclsRequest(*acl.wire_filter(), acl.operation, ALLOW) for acl in acls]
    for acl, reply in zip(acls, await _send_each(kafka, requests, timeout_s), strict=True):
        for code, message in reply.creation_responses:
            if code:
                raise AclError(f"creating ACL {acl}: error {code} {message}")


async def delete_acls(kafka: Mapping[str, Any], acls: list[Acl], *, timeout_s: float) -> None:
    """Delete every ACL in `acls` (tests clean up after themselves); idempotent."""
    requests = [DeleteAclsRequest(*acl.wire_filter(), acl.operation, ALLOW) for acl in acls]
    for acl, reply in zip(acls, await _send_each(kafka, requests, timeout_s), strict=True):
        for result in reply.filter_responses:
            if result[0]:
                raise AclError(f"deleting ACL {acl}: error {result[0]} {result[1]}")


async def _send_each(
    kafka: Mapping[str, Any], requests: Sequence[Request[Any]], timeout_s: float
) -> list[Any]:
    """Send every request to one broker, at once; the replies in order."""
    client = AIOKafkaClient(**kafka, request_timeout_ms=round(timeout_s * 1000))
    try:
        async with asyncio.timeout(timeout_s):
            await client.bootstrap()
            node = client.get_random_node()
            return list(await asyncio.gather(*(client.send(node, r) for r in requests)))
    finally:
        await client.close()
