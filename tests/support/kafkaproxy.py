"""A TCP proxy in front of the stack's Kafka broker that a client cannot route around.

A plain TCP proxy is not enough for Kafka: the broker answers the bootstrap request with its
own advertised address, and the client then connects there directly. This proxy rewrites the
broker's port in the answers that carry broker addresses (Metadata, FindCoordinator,
DescribeCluster), so every connection of the client goes through it, and `cut()` with
`refuse = True` takes Kafka away from that client alone while the shared broker runs on:

    async with kafka_proxy(stack_env.kafka_bootstrap) as proxy:
        start a service with kafka_bootstrap=proxy.address ...
        proxy.refuse = True; proxy.cut()     # Kafka is gone for the service
        proxy.refuse = False                 # and back

Only the port is rewritten, in place: the proxy listens on the broker's own host, so a
record's length never changes. One broker (the local stack's) is what it is built for. When the
stack's Kafka takes TLS, the proxy terminates it with the broker's own certificate and opens
TLS again to the broker (SASL is inside the Kafka protocol, and passes through).
"""

from __future__ import annotations

import ssl
import struct
from pathlib import Path
from typing import Final

from stack.env import StackEnv
from stack.kafkasec import KafkaSecrets
from tests.support.tcpproxy import Rewrite, TcpProxy

# Requests whose answers name brokers by host and port.
_METADATA: Final = 3
_FIND_COORDINATOR: Final = 10
_DESCRIBE_CLUSTER: Final = 60
_ADDRESSED: Final = frozenset({_METADATA, _FIND_COORDINATOR, _DESCRIBE_CLUSTER})


class KafkaProxy(TcpProxy):
    """TcpProxy to one broker whose answers point clients back at the proxy."""

    def __init__(
        self,
        broker_host: str,
        broker_port: int,
        tls: tuple[ssl.SSLContext, ssl.SSLContext] | None = None,
    ) -> None:
        server_tls, client_tls = tls or (None, None)
        super().__init__(
            broker_host,
            broker_port,
            broker_host,
            rewrite=self._link,
            server_tls=server_tls,
            client_tls=client_tls,
        )

    async def __aenter__(self) -> KafkaProxy:
        await self.start()
        return self

    @property
    def address(self) -> str:
        """host:port to give clients as their bootstrap servers."""
        return f"{self.host}:{self.port}"

    def _link(self) -> tuple[Rewrite, Rewrite]:
        host = self.target[0].encode()
        frames = _Frames(
            host + struct.pack(">i", self.target[1]), host + struct.pack(">i", self.port)
        )
        return frames.request, frames.response


def kafka_proxy(bootstrap: str) -> KafkaProxy:
    """A proxy for the broker at `bootstrap` (host:port); use it with `async with`."""
    host, _, port = bootstrap.rpartition(":")
    return KafkaProxy(host, int(port), _stack_tls())


def _stack_tls() -> tuple[ssl.SSLContext, ssl.SSLContext] | None:
    """(listening, connecting) TLS contexts for the local stack's broker, if it takes TLS."""
    env = StackEnv.load()
    if env.values.get("FLEETRUN_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT") not in ("SSL", "SASL_SSL"):
        return None
    secrets = KafkaSecrets(Path(env["FLEETRUN_STACK_DIR"]) / "kafka")
    listening = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    listening.load_cert_chain(secrets.broker_pem)
    return listening, ssl.create_default_context(cafile=secrets.ca_cert)


class _Frames:
    """One connection: notes the correlation ids of address-bearing requests, and rewrites the
    broker address in their responses. Frames are size-prefixed (int32) in both directions; a
    request header starts api_key (int16), api_version (int16), correlation_id (int32), a
    response header with the correlation_id."""

    def __init__(self, old: bytes, new: bytes) -> None:
        self.old, self.new = old, new
        self._watched: set[int] = set()
        self._up = bytearray()
        self._down = bytearray()

    def request(self, data: bytes) -> bytes:
        out = bytearray()
        for frame in _split(self._up, data):
            api_key, _version, correlation = struct.unpack_from(">hhi", frame, 4)
            if api_key in _ADDRESSED:
                self._watched.add(correlation)
            out += frame
        return bytes(out)

    def response(self, data: bytes) -> bytes:
        out = bytearray()
        for frame in _split(self._down, data):
            (correlation,) = struct.unpack_from(">i", frame, 4)
            if correlation in self._watched:
                self._watched.discard(correlation)
                frame = frame.replace(self.old, self.new)
            out += frame
        return bytes(out)


def _split(buffer: bytearray, data: bytes) -> list[bytes]:
    """Whole frames (size prefix included) from what was buffered plus `data`; keeps the rest."""
    buffer += data
    frames = []
    while len(buffer) >= 4:
        (size,) = struct.unpack_from(">i", buffer)
        if len(buffer) < 4 + size:
            break
        frames.append(bytes(buffer[: 4 + size]))
        del buffer[: 4 + size]
    return frames
