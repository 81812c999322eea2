"""The output rule: text when the bytes are UTF-8 without NUL, otherwise base64; exact both ways."""

from __future__ import annotations

import base64
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import decode_output, encode_output, load_schema
from schemas.output import decode_base64


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
        ("YWJj=", "base64", "not valid base64"),  # padding after a whole group: binascii's
        ("YWJj====", "base64", "not valid base64"),  # strict_mode takes these, the schema not
        ("YWJjYQ===", "base64", "not valid base64"),
        ("=YWJj", "base64", "not valid base64"),
        ("YW=Jj", "base64", "not valid base64"),
        ("-_8=", "base64", "not valid base64"),  # the URL-safe alphabet
        ("YWJjé===", "base64", "not valid base64"),
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


# The schema file's base64 pattern, with ECMA-262's `$`.
BASE64 = re.compile(load_schema("result")["$defs"]["base64"]["pattern"][:-1] + r"\Z")


@given(
    st.one_of(
        st.binary(max_size=30).map(lambda b: base64.b64encode(b).decode()),
        st.text("AQw+/=\n -_", max_size=12),
        st.binary(max_size=30).map(lambda b: base64.b64encode(b).decode() + "=" * 3),
    )
)
def test_base64_is_read_exactly_as_the_schema_writes_it(text: str) -> None:
    try:
        data = decode_base64(text)
    except ValueError:
        assert not BASE64.match(text)
    else:
        assert BASE64.match(text)
        assert data == base64.b64decode(text, validate=True)
