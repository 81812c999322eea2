"""The output rule: text when the bytes are UTF-8 without NUL, otherwise base64; exact both ways."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import decode_output, encode_output


@pytest.mark.parametrize(
    ("data", "text", "encoding"),
    [
        (b"", "", "utf-8"),
        (b"Linux 6.1.0\n", "Linux 6.1.0\n", "utf-8"),
        ("héllo ✓ 🚀\r\n".encode(), "héllo ✓ 🚀\r\n", "utf-8"),
        (
            b"\x1b[31mred\x1b[0m\t\x7f",
            "\x1b[31mred\x1b[0m\t\x7f",
            "utf-8",
        ),  # control bytes are text
        (b"a\x00b", "YQBi", "base64"),  # NUL: PostgreSQL text cannot hold it
        (b"\xff\xfe", "//4=", "base64"),  # not UTF-8
        (b"caf\xc3", "Y2Fmww==", "base64"),  # a cut multi-byte sequence (truncated output)
        (b"\xed\xa0\x80", "7aCA", "base64"),  # an encoded surrogate is not UTF-8
        (b"\xc0\xaf", "wK8=", "base64"),  # overlong encoding is not UTF-8
    ],
)
def test_encoding_table(data: bytes, text: str, encoding: str) -> None:
    assert encode_output(data) == (text, encoding)
    assert decode_output(text, encoding) == data  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "encoding", "problem"),
    [
        ("a\x00b", "utf-8", "NUL"),
        ("\ud800", "utf-8", "surrogate"),
        ("YQ=", "base64", "not valid base64"),
        ("YQ==\n", "base64", "not valid base64"),
        ("Y Q==", "base64", "not valid base64"),
        ("YQ", "base64", "not valid base64"),
        ("x", "gzip", "unknown output encoding"),
    ],
)
def test_decoding_refuses_what_the_rule_never_writes(
    text: str, encoding: str, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        decode_output(text, encoding)  # type: ignore[arg-type]


@given(st.binary(max_size=4096))
def test_any_bytes_round_trip(data: bytes) -> None:
    text, encoding = encode_output(data)
    assert decode_output(text, encoding) == data
    assert "\x00" not in text


@given(st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00")))
def test_text_output_stays_text(text: str) -> None:
    assert encode_output(text.encode()) == (text, "utf-8")
