"""The output encoding rule: captured bytes on the wire as text when possible, else base64."""

from __future__ import annotations

import base64
import binascii
from typing import Final, Literal, get_args

OutputEncoding = Literal["utf-8", "base64"]
OUTPUT_ENCODINGS: Final[tuple[OutputEncoding, ...]] = get_args(OutputEncoding)


def encode_output(data: bytes) -> tuple[str, OutputEncoding]:
    """Text when `data` is valid UTF-8 without NUL, else base64; decoding gives `data` back."""
    # NUL is excluded because PostgreSQL text and C strings cannot hold it.
    if b"\x00" not in data:
        try:
            return data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            pass
    return base64.b64encode(data).decode("ascii"), "base64"


def decode_output(text: str, encoding: OutputEncoding) -> bytes:
    """The captured bytes written as `text` in `encoding`; ValueError when they cannot be."""
    if encoding == "utf-8":
        if "\x00" in text:
            raise ValueError('holds a NUL character, which "utf-8" output never does')
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("holds an unpaired surrogate, which is not UTF-8") from None
    if encoding == "base64":
        try:
            return binascii.a2b_base64(text, strict_mode=True)
        except (binascii.Error, ValueError):
            raise ValueError("is not valid base64 (RFC 4648, padded, no line breaks)") from None
    raise ValueError(f"unknown output encoding {encoding!r}")
