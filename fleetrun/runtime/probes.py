"""Cheap reachability checks of Kafka and PostgreSQL, run every few seconds by outage.watch().

Each probe keeps one connection of its own: a service's busy pool or consumer cannot delay it,
and what it measures is whether the server answers now, idle service or not.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Mapping
from typing import Any, Protocol

import asyncpg
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaConnectionError
from aiokafka.protocol.metadata import MetadataRequest

from fleetrun.runtime.kafkaauth import login_refusal


class Probe(Protocol):
    """A reachability check: returns when the server answers, raises otherwise."""

    async def __call__(self) -> None: ...

    async def close(self) -> None: ...


class KafkaProbe:
    """One metadata request without topics (the brokers only: the smallest answer there is)."""

    def __init__(self, kafka: Mapping[str, Any], client_id: str, timeout_s: float) -> None:
        self.kafka = kafka  # client_options(settings): bootstrap and security
        self.client_id = client_id
        self.timeout_s = timeout_s
        self._client: AIOKafkaClient | None = None

    async def __call__(self) -> None:
        """Raise unless a broker answers."""
        if self._client is None:
            client = AIOKafkaClient(
                **self.kafka,
                client_id=self.client_id,
                request_timeout_ms=int(self.timeout_s * 1000),
            )
            try:
                await client.bootstrap()
            except KafkaConnectionError as exc:
                await _quietly(client.close())
                # A refused login looks like a broker that is down; /healthz and the outage
                # log should say which it is.
                if (refusal := await login_refusal(self.kafka, self.timeout_s)) is not None:
                    raise KafkaConnectionError(
                        f"login refused: {type(refusal).__name__}: {refusal}"
                    ) from exc
                raise
            except BaseException:
                await _quietly(client.close())
                raise
            self._client = client
        await self._client.send(self._client.get_random_node(), MetadataRequest([]))

    async def close(self) -> None:
        """Close the probe's connection."""
        if self._client is not None:
            client, self._client = self._client, None
            await _quietly(client.close())


class PostgresProbe:
    """`SELECT 1` on a connection of the probe's own, opened again after any failure."""

    def __init__(self, dsn: str, timeout_s: float, application_name: str) -> None:
        self._dsn = dsn  # holds the password: never in a repr or a log
        self.timeout_s = timeout_s
        self.application_name = application_name
        self._conn: asyncpg.Connection | None = None

    async def __call__(self) -> None:
        """Raise unless the server answers a query."""
        try:
            if self._conn is None:
                self._conn = await asyncpg.connect(
                    self._dsn,
                    timeout=self.timeout_s,
                    server_settings={"application_name": self.application_name[:63]},
                )
            await self._conn.fetchval("SELECT 1", timeout=self.timeout_s)
        except BaseException:
            self._drop()
            raise

    async def close(self) -> None:
        """Close the probe's connection."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                await conn.close(timeout=self.timeout_s)
            except Exception:
                conn.terminate()

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None


async def _quietly(closing: Awaitable[object]) -> None:
    with contextlib.suppress(Exception):
        await closing
