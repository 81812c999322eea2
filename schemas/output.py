"""The output encoding rule: captured bytes on the wire as text when possible, else base64."""

from __future__ import annotations

import base64
import binascii

from schemas.fields import OutputEncoding

_NOT_BASE64 = "is not valid base64 (RFC 4648 standard alphabet, padded, no line breaks)"


def encode_output(data: bytes) -> tuple[str, OutputEncoding]:
    """Text when `data` is valid UTF-8 without NUL, else base64; decoding gives `data` back."""
    # NUL is excluded because PostgreSQL text and C strings cannot hold it.
    if b"\x00" not in data:
        try:
            return data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            pass
    return base64.b64encode(data).decode("ascii"), "base64"


def decode_base64(text: str) -> bytes:
    """The bytes of `text` in base64 as the contract writes it (the schema files' pattern:
    RFC 4648 standard alphabet, padded, no line breaks); ValueError for anything else."""
    try:
        data = binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        raise ValueError(_NOT_BASE64) from None
    # strict_mode still takes padding after a complete group ("YWJj=", "YWJj===="), which the
    # pattern refuses; given what strict_mode checks, the one length base64 of these bytes has
    # (4 characters per 3 bytes, rounded up) leaves exactly the strings the pattern matches.
    if len(text) != 4 * ((len(data) + 2) // 3):
        raise ValueError(_NOT_BASE64)
    return data


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
        return decode_base64(text)
    raise ValueError(f"unknown output encoding {encoding!r}")
