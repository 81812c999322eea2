"""`host: line` from live output chunks (fleetrun.output/1): `run --follow` and `fleetrun tail`.

Chunks are cut where the collector's buffer was, not at line ends: each (host, attempt, stream)
keeps its unfinished line until the next chunk or the end of the stream. Lines are shown, never
stored, so control characters are escaped (a host must not move the operator's cursor, clear the
screen or retitle the terminal) and bytes that are not UTF-8 show as U+FFFD.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from fleetrun.cli.safetext import shown
from schemas import Output

# A colour per host, stable across runs (the host name's CRC picks it).
_COLOURS: Final = (31, 32, 33, 34, 35, 36, 91, 92, 93, 94, 95, 96)
# A line longer than this is shown in pieces rather than held in memory until its end.
MAX_LINE_BYTES: Final = 65_536

Write = Callable[[str, str], None]  # (stream, text with its newline)


def write_to_std(stream: str, text: str) -> None:
    """Write a host's stdout line to stdout and its stderr line to stderr, at once."""
    out = sys.stderr if stream == "stderr" else sys.stdout
    out.write(text)
    out.flush()


def escape(text: str) -> str:
    """`text` with control characters (ESC, CR, BEL, C1…) as visible escapes; tab kept."""
    return shown(text)


def colour_of(host: str) -> int:
    """The ANSI colour code of `host`."""
    return _COLOURS[zlib.crc32(host.encode()) % len(_COLOURS)]


@dataclass(slots=True)
class _Partial:
    pending: bytearray = field(default_factory=bytearray)
    next_offset: int = 0


class LinePrinter:
    """Folds chunks into complete lines and writes them as `host: line`."""

    def __init__(self, write: Write, *, colour: bool) -> None:
        self._write = write
        self._colour = colour
        self._partials: dict[tuple[str, int, str], _Partial] = {}
        self.dropped_bytes: dict[str, int] = {}  # host -> bytes the live budget dropped
        self.lines = 0

    def add(self, chunk: Output) -> None:
        """Take one chunk: print the lines it completes."""
        key = (chunk.host, chunk.attempt, chunk.stream)
        partial = self._partials.setdefault(key, _Partial())
        if chunk.offset > partial.next_offset:  # the live budget dropped bytes in between
            self._line(chunk, partial.pending, cut=True)
            partial.pending.clear()
            skipped = chunk.offset - partial.next_offset
            self._emit(chunk.host, chunk.stream, f"[fleetrun: {skipped} bytes not streamed]")
        data = chunk.data_bytes
        partial.next_offset = chunk.offset + len(data)
        if chunk.dropped_bytes:
            self.dropped_bytes[chunk.host] = chunk.dropped_bytes
        partial.pending += data
        *lines, rest = bytes(partial.pending).split(b"\n")
        for line in lines:
            self._line(chunk, line, cut=False)
        partial.pending[:] = rest
        while len(partial.pending) > MAX_LINE_BYTES:
            self._line(chunk, partial.pending[:MAX_LINE_BYTES], cut=False)
            del partial.pending[:MAX_LINE_BYTES]
        if chunk.eos:
            self._line(chunk, partial.pending, cut=True)
            del self._partials[key]

    def flush(self) -> None:
        """Print every unfinished line (following stopped)."""
        for (host, _attempt, stream), partial in self._partials.items():
            if partial.pending:
                self._emit(host, stream, _text(partial.pending))
        self._partials.clear()

    def dropped_note(self) -> str | None:
        """What the live budget dropped, said once at the end (None: nothing)."""
        total = sum(self.dropped_bytes.values())
        if not total:
            return None
        hosts = len(self.dropped_bytes)
        return (
            f"live output: {total:,} bytes from {hosts} host{'s' if hosts != 1 else ''} were not "
            "streamed (the request's live budget); the results below are complete"
        )

    def _line(self, chunk: Output, line: bytes | bytearray, *, cut: bool) -> None:
        if cut and not line:
            return
        self._emit(chunk.host, chunk.stream, _text(line))

    def _emit(self, host: str, stream: str, text: str) -> None:
        self.lines += 1
        label = escape(host)
        if self._colour:
            label = f"\x1b[{colour_of(host)}m{label}\x1b[0m"
        self._write(stream, f"{label}: {escape(text)}\n")


def _text(data: bytes | bytearray) -> str:
    return bytes(data).decode("utf-8", errors="replace").removesuffix("\r")
