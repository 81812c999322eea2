"""fleetrun.output/1: a chunk of a host's live output, for requests that ask for it.

Live output is a view, not the record: chunks may be coalesced, dropped past the request's
live-byte budget (a gap between `offset`s, counted in `dropped_bytes`) or lost with a failing
publish. The result of the host (fleetrun.result/1) stays the complete account: head + tail,
exact sizes and SHA-256.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Final, Literal

from msgspec import Meta, Struct

from schemas import limits
from schemas.errors import SchemaError
from schemas.fields import Attempt, ByteCount, Host, OutputEncoding, Timestamp, Uuid
from schemas.output import decode_output
from schemas.patterns import check_patterns, plan
from schemas.timestamps import parse_timestamp

OUTPUT_SCHEMA: Final = "fleetrun.output/1"
# The collector never sends more in one chunk; the bound keeps a chunk a small Kafka record.
MAX_CHUNK_BYTES: Final = 65_536
MAX_CHUNK_WIRE_CHARS: Final = 4 * ((MAX_CHUNK_BYTES + 2) // 3)

Stream = Literal["stdout", "stderr"]
Sequence = Annotated[int, Meta(ge=0, le=limits.MAX_SAFE_INTEGER)]
ChunkText = Annotated[str, Meta(max_length=MAX_CHUNK_WIRE_CHARS)]


class Output(Struct, frozen=True, kw_only=True, gc=False, tag_field="schema", tag=OUTPUT_SCHEMA):
    """fleetrun.output/1: bytes `offset`… of one stream of one host's attempt, as they came."""

    SCHEMA: ClassVar[str] = OUTPUT_SCHEMA

    request_id: Uuid
    host: Host
    attempt: Attempt
    stream: Stream
    sequence: Sequence  # per (host, attempt), both streams: 0, 1, 2, … with no gap
    offset: ByteCount  # where `data` starts in the stream; a jump means bytes were dropped
    data: ChunkText
    encoding: OutputEncoding
    dropped_bytes: ByteCount = 0  # of this stream so far, not streamed (the live-byte budget)
    eos: bool = False  # the stream ended: no more chunks for it in this attempt
    at: Timestamp  # when the collector received the chunk's first byte

    def __post_init__(self) -> None:
        check_patterns(self, _OUTPUT_CHECKS)
        parse_timestamp(self.at, "at")
        try:
            size = len(decode_output(self.data, self.encoding))
        except ValueError as exc:
            raise SchemaError("data", str(exc), "output") from None
        if size > MAX_CHUNK_BYTES:
            raise SchemaError(
                "data",
                f"holds {size:,} bytes; a chunk holds at most {MAX_CHUNK_BYTES:,}",
                "output_size",
            )

    @property
    def data_bytes(self) -> bytes:
        """The chunk's bytes."""
        return decode_output(self.data, self.encoding)


_OUTPUT_CHECKS: Final = plan(Output)
