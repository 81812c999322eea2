"""Host text shown safely (issue 14 item 6): controls escaped on the terminal and in CSV cells,
formulas kept out of spreadsheets, `--raw` and `--json` exact."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetrun.cli.grouping import group_results, render_groups
from fleetrun.cli.live import escape as live_escape
from fleetrun.cli.query import render_csv, render_requests, render_status
from fleetrun.cli.safetext import CONTROL, csv_cell, shown, shown_bytes
from fleetrun.cli.web.render import visible
from schemas import RESULT_STATUSES, ErrorInfo, decode_result, encode
from tests.support.records import RID, make_result

# What the issue saw: a window title (OSC 0), a screen clear, the clipboard (OSC 52), a bell.
HOSTILE = b"\x1b]0;pwned\x07\x1b[2J\x1b]52;c;ZXZpbA==\x07ok\xc2\x9b31m\r\x08\x7f\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain\ttabs\nand lines", "plain\ttabs\nand lines"),
        ("\x1b[31mred", "\\x1b[31mred"),
        ("\x1b]52;c;ZXZpbA==\x07", "\\x1b]52;c;ZXZpbA==\\x07"),
        ("cr\roverwrite", "cr\\x0doverwrite"),
        ("nul\x00 del\x7f c1\x9b", "nul\\x00 del\\x7f c1\\x9b"),
        ("é ✓ 中", "é ✓ 中"),
    ],
)
def test_controls_but_newline_and_tab_are_escaped(text: str, expected: str) -> None:
    assert shown(text) == expected


@given(st.text())
def test_nothing_a_terminal_obeys_survives_escaping(text: str) -> None:
    out = shown(text)
    assert CONTROL.search(out) is None
    assert out.count("\n") == text.count("\n")


def test_undecodable_bytes_are_replaced_and_controls_escaped() -> None:
    assert shown_bytes(b"\xff\x1b[2J") == "\ufffd\\x1b[2J"


def test_the_cli_the_follow_lines_and_the_web_console_escape_alike() -> None:
    text = HOSTILE.decode("utf-8", errors="replace")
    assert live_escape(text) == shown(text)
    page = str(visible("<b>\x1b[2J"))
    assert page == '&lt;b&gt;<span class="ctl" title="control character">\\x1b</span>[2J'


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("a=1", "a=1"),
        ("", ""),
    ],
)
def test_csv_cells_cannot_start_a_formula(cell: str, expected: str) -> None:
    assert csv_cell(cell) == expected


def test_the_grouped_report_escapes_output_and_reasons_unless_raw() -> None:
    results = [
        make_result(host="web01", stdout=HOSTILE, stderr=b"\x1b[2Jerr\n"),
        make_result(
            host="web02",
            status="error",
            error=ErrorInfo(type="ChannelOpenError", message="banner \x1b]0;title\x07"),
        ),
    ]
    text = render_groups(group_results(results))
    assert CONTROL.search(text) is None
    assert "\\x1b]52;c;ZXZpbA==\\x07ok" in text
    assert "stderr: \\x1b[2Jerr" in text
    assert "banner \\x1b]0;title\\x07" in text

    raw = render_groups(group_results(results), raw=True)
    assert HOSTILE.decode().rstrip("\n") in raw
    assert "banner \\x1b]0;title\\x07" in raw  # only the hosts' output is raw, not our headers


def test_raw_keeps_undecodable_bytes_for_stdout() -> None:
    raw = render_groups(group_results([make_result(stdout=b"\xff\x1b\n")]), raw=True)
    assert b"\xff\x1b" in raw.encode("utf-8", errors="surrogateescape")


def _csv(results: Any, **kw: Any) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(render_csv(results, **kw))))


def test_csv_cells_are_escaped_and_protected() -> None:
    results = [
        make_result(
            host="web01",
            status="failed",
            stdout=b"=cmd|' /C calc'!A0\x1b]52;c;eA==\x07",
            stderr=b"@SUM(1)",
            error=ErrorInfo(type="X", message="y"),
        )
    ]
    (row,) = _csv(results)
    assert row["stdout"] == "'=cmd|' /C calc'!A0\\x1b]52;c;eA==\\x07"
    assert row["stderr"] == "'@SUM(1)"
    assert row["exit_status"] == "1"
    (raw,) = _csv(results, raw=True)
    assert raw["stdout"] == "'=cmd|' /C calc'!A0\x1b]52;c;eA==\x07"


def test_json_stays_exact() -> None:
    result = make_result(stdout=HOSTILE)
    assert decode_result(encode(result)).stdout_data == HOSTILE


def _status_row(**fields: object) -> dict[str, Any]:
    row: dict[str, Any] = {
        "state": "rejected",
        "command": "printf '\x1b]0;x\x07'",
        "targets": ["web01"],
        "principal": "alice\x1b[8m",
        "submitted_at": datetime(2026, 1, 1, tzinfo=UTC),
        "targets_total": None,
        "hosts_reported": 0,
        "reject_reason": "bad \x07 thing",
        "duration": None,
        "request_id": RID,
    }
    for status in RESULT_STATUSES:
        row[status] = 0
    row.update(fields)
    return row


def test_status_and_requests_escape_what_requesters_wrote() -> None:
    status = render_status(RID, _status_row())
    assert CONTROL.search(status) is None
    assert "printf '\\x1b]0;x\\x07'" in status
    assert "alice\\x1b[8m" in status
    assert "bad \\x07 thing" in status
    listing = render_requests([_status_row()])
    assert CONTROL.search(listing) is None
    assert "\\x1b]0;x\\x07" in listing
