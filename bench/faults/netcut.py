"""The collector cut off from its hosts: a relay in front of every host that can hold all bytes.

Why a relay and not a network namespace or a blackhole route: the hosts (the simulated fleet
and the stack's sshd) listen on loopback addresses, which no route or namespace of ours can
separate from the collector without also cutting it off from Kafka (also on loopback), and
this machine has neither iptables nor nftables. So the suite's inventory for this fault points
every host at a listener of this relay (127.0.0.1, one port per host), with a known_hosts that
names those listeners, and `cut()` does what a dead network does to TCP: every byte on a live
link is held (nothing is closed, nothing is answered), a new connection is accepted by the
kernel and then hears nothing — until `heal()`, when everything held flows again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_CHUNK = 65536
_CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A host the relay stands in front of, and where the relay listens for it."""

    address: str
    port: int
    listen_port: int


class Relay:
    """One listener per target; `cut()` holds every byte and every new connection."""

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def listen(self, targets: Iterable[tuple[str, int]]) -> list[Endpoint]:
        """Start a listener on a free 127.0.0.1 port for each (address, port)."""
        endpoints = []
        for address, port in targets:
            accept = functools.partial(self._accept, address=address, port=port)
            server = await asyncio.start_server(accept, "127.0.0.1", 0)
            self._servers.append(server)
            endpoints.append(Endpoint(address, port, server.sockets[0].getsockname()[1]))
        return endpoints

    def cut(self) -> None:
        """From now on, nothing passes in either direction."""
        self._open.clear()

    def heal(self) -> None:
        """Everything held flows again."""
        self._open.set()

    async def close(self) -> None:
        """Stop listening, drop every link, wait for the relay tasks (bounded)."""
        self._open.set()
        for server in self._servers:
            server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        async with asyncio.timeout(10):
            await asyncio.gather(*self._tasks, return_exceptions=True)
            for server in self._servers:
                await server.wait_closed()

    async def _accept(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, address: str, port: int
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._writers.add(writer)
        try:
            await self._open.wait()  # a connection made during the cut hears nothing until heal
            try:
                async with asyncio.timeout(_CONNECT_TIMEOUT_S):
                    up_reader, up_writer = await asyncio.open_connection(address, port)
            except (OSError, TimeoutError):
                return
            self._writers.add(up_writer)
            try:
                await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
            finally:
                up_writer.close()
                self._writers.discard(up_writer)
        finally:
            writer.close()
            self._writers.discard(writer)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(_CHUNK):
                await self._open.wait()  # cut: hold the bytes, as a dead network would
                writer.write(data)
                await writer.drain()
        # One side finished: close the other, as TCP would pass the FIN on.
        with contextlib.suppress(OSError):
            if writer.can_write_eof():
                writer.write_eof()


def relayed_known_hosts(original: Iterable[Path], endpoints: Iterable[Endpoint]) -> str:
    """known_hosts lines that give each relay listener its host's key(s)."""
    keys: dict[tuple[str, int], list[str]] = {}
    for path in original:
        for line in path.read_text().splitlines():
            fields = line.split()
            if len(fields) < 3 or line.startswith(("#", "@")):
                continue
            for pattern in fields[0].split(","):
                host, port = _pattern(pattern)
                keys.setdefault((host, port), []).append(" ".join(fields[1:3]))
    out = []
    for e in endpoints:
        out += [f"[127.0.0.1]:{e.listen_port} {key}" for key in keys.get((e.address, e.port), [])]
    return "\n".join(out) + "\n"


def _pattern(pattern: str) -> tuple[str, int]:
    if pattern.startswith("["):
        host, _, port = pattern[1:].partition("]:")
        return host, int(port)
    return pattern, 22
