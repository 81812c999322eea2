"""`host: line` from chunks: lines across chunk cuts, ends of streams, gaps, escaping, colour."""

from __future__ import annotations

import pytest

from fleetrun.cli.live import LinePrinter, colour_of, escape
from schemas import Output

RID = "0b6e9c1a-5f0e-4a57-9d1c-2f2b7c8e4a10"


def _chunk(data: bytes, offset: int, seq: int, **extra: object) -> Output:
    return Output(
        request_id=RID,
        host=str(extra.pop("host", "web01")),
        attempt=1,
        stream="stdout",
        sequence=seq,
        offset=offset,
        data=data.decode(),
        encoding="utf-8",
        at="2024-05-01T12:00:00Z",
        **extra,  # type: ignore[arg-type]
    )


def _printer() -> tuple[LinePrinter, list[tuple[str, str]]]:
    written: list[tuple[str, str]] = []
    return LinePrinter(lambda stream, text: written.append((stream, text)), colour=False), written


def test_a_line_cut_between_chunks_prints_once_whole() -> None:
    printer, written = _printer()
    printer.add(_chunk(b"one\ntw", 0, 0))
    assert written == [("stdout", "web01: one\n")]
    printer.add(_chunk(b"o\nthr", 6, 1))
    printer.add(_chunk(b"ee", 11, 2, eos=True))  # the end of the stream ends its last line
    assert [text for _, text in written] == ["web01: one\n", "web01: two\n", "web01: three\n"]


def test_bytes_the_budget_dropped_are_said_where_and_at_the_end() -> None:
    printer, written = _printer()
    printer.add(_chunk(b"a\n", 0, 0))
    printer.add(_chunk(b"", 100, 1, dropped_bytes=98, eos=True))
    assert written[-1] == ("stdout", "web01: [fleetrun: 98 bytes not streamed]\n")
    assert printer.dropped_note() == (
        "live output: 98 bytes from 1 host were not streamed (the request's live budget); "
        "the results below are complete"
    )


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),
        ("progress\r", "progress"),  # CRLF line ends lose their CR
        ("a\rb", "a\\x0db"),
        ("tab\tkept", "tab\tkept"),
        ("\x9bcsi", "\\x9bcsi"),
    ],
)
def test_control_characters_are_escaped(raw: str, shown: str) -> None:
    printer, written = _printer()
    printer.add(_chunk(raw.encode() + b"\n", 0, 0))
    assert written == [("stdout", f"web01: {shown}\n")]


def test_colour_per_host_is_stable_and_only_when_asked() -> None:
    written: list[tuple[str, str]] = []
    printer = LinePrinter(lambda stream, text: written.append((stream, text)), colour=True)
    printer.add(_chunk(b"x\n", 0, 0, host="db1"))
    assert written == [("stdout", f"\x1b[{colour_of('db1')}mdb1\x1b[0m: x\n")]
    assert escape("db1") == "db1"
