"""A TCP proxy for fault tests: sits between a client and a server and can cut or freeze links.

    async with TcpProxy("127.0.11.1", 2222) as proxy:    # listens on 127.0.0.1:<free port>
        connect to proxy.host:proxy.port ...
        proxy.cut()          # reset every live connection (RST), keep listening
        proxy.freeze()       # stop relaying on live links without closing: a silently dead peer
        proxy.thaw(); proxy.refuse = True   # new connections are closed at once

`rewrite`, when given, is called once per connection and returns two functions that see every
chunk relayed (client → server, server → client) and return what to send on: a protocol-aware
proxy (tests/support/kafkaproxy.py) frames and edits the bytes there.

Every wait inside has a deadline; connections are tracked so `close` leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

_CONNECT_TIMEOUT_S = 5.0
_CHUNK = 65536

Rewrite = Callable[[bytes], bytes]


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    thawed: asyncio.Event = field(default_factory=asyncio.Event)


class TcpProxy:
    """Forwards listen_host:port → target_host:target_port; see the module docstring."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        listen_host: str = "127.0.0.1",
        *,
        rewrite: Callable[[], tuple[Rewrite, Rewrite]] | None = None,
        server_tls: ssl.SSLContext | None = None,
        client_tls: ssl.SSLContext | None = None,
    ) -> None:
        self.target = (target_host, target_port)
        self.host = listen_host
        self.rewrite = rewrite
        # TLS terminated here (clients' side) and begun again (the target's side), so `rewrite`
        # sees the protocol's bytes on a TLS listener too.
        self.server_tls = server_tls
        self.client_tls = client_tls
        self.port = 0
        self.accepted = 0
        self.refuse = False
        self._links: set[_Link] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def live(self) -> int:
        """Connections currently relayed."""
        return len(self._links)

    async def start(self) -> TcpProxy:
        """Listen on a free port of listen_host."""
        self._server = await asyncio.start_server(self._accept, self.host, 0, ssl=self.server_tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def cut(self, *, reset: bool = True) -> int:
        """Drop every live connection (RST by default, else FIN); returns how many."""
        links = list(self._links)
        for link in links:
            self._drop(link, reset=reset)
        return len(links)

    def freeze(self) -> None:
        """Stop relaying on the live connections, which stay open (a silent peer); new ones
        relay normally."""
        for link in self._links:
            link.thawed.clear()

    def thaw(self) -> None:
        """Relay again on every connection."""
        for link in self._links:
            link.thawed.set()

    async def close(self) -> None:
        """Stop listening and drop everything."""
        if self._server is not None:
            self._server.close()
        self.thaw()
        self.cut(reset=False)
        pending = [*self._handlers, *(t for link in self._links for t in link.tasks)]
        for task in pending:
            task.cancel()
        if pending:
            async with asyncio.timeout(5):
                await asyncio.gather(*pending, return_exceptions=True)
        if self._server is not None:
            async with asyncio.timeout(5):
                await self._server.wait_closed()

    async def __aenter__(self) -> TcpProxy:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- internals ----------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._handlers.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.refuse:
            writer.close()
            return
        try:
            async with asyncio.timeout(_CONNECT_TIMEOUT_S):
                s_reader, s_writer = await asyncio.open_connection(
                    *self.target, ssl=self.client_tls
                )
        except (OSError, TimeoutError):
            writer.close()
            return
        link = _Link(writer, s_writer)
        link.thawed.set()
        self._links.add(link)
        upstream, downstream = self.rewrite() if self.rewrite else (_same, _same)
        link.tasks = [
            asyncio.create_task(self._pump(reader, s_writer, link, upstream)),
            asyncio.create_task(self._pump(s_reader, writer, link, downstream)),
        ]
        await asyncio.gather(*link.tasks, return_exceptions=True)
        self._drop(link, reset=False)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        link: _Link,
        rewrite: Rewrite,
    ) -> None:
        try:
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    break
                await link.thawed.wait()  # frozen: hold the bytes, as a dead network would
                writer.write(rewrite(data))
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._drop(link, reset=False)

    def _drop(self, link: _Link, *, reset: bool) -> None:
        if link not in self._links:
            return
        self._links.discard(link)
        for w in (link.client, link.server):
            sock = w.get_extra_info("socket")
            if reset and sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            if reset:
                w.transport.abort()
            else:
                w.close()
        for task in link.tasks:
            if task is not asyncio.current_task():
                task.cancel()


def _same(data: bytes) -> bytes:
    return data
