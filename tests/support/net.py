"""Plain network helpers for tests: a free port, a GET from a service's ops endpoint."""

from __future__ import annotations

import asyncio
import socket


def free_port(address: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (for a server to bind, or to find closed)."""
    with socket.socket() as s:
        s.bind((address, 0))
        port: int = s.getsockname()[1]
    return port


async def http_get(port: int, path: str, *, timeout_s: float = 10.0) -> tuple[int, bytes]:
    """GET `path` from 127.0.0.1:`port` over HTTP/1.0; (status code, body)."""
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        await writer.drain()
        data = await reader.read()
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body
