"""The web console's pure parts: output made visible, durations, the histogram, settings."""

from __future__ import annotations

import pytest

from fleetrun.cli.web.render import EDGES_MS, duration_text, histogram, output_text, visible
from fleetrun.cli.web.settings import WebSettings, is_loopback
from fleetrun.runtime.settings import SettingsError, load


def _ctl(code: str) -> str:
    return f'<span class="ctl" title="control character">\\x{code}</span>'


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b[31mred\x1b[0m", f"{_ctl('1b')}[31mred{_ctl('1b')}[0m"),
        ("bell\x07 nul\x00 cr\r", f"bell{_ctl('07')} nul{_ctl('00')} cr{_ctl('0d')}"),
        ("keeps\nlines\tand tabs", "keeps\nlines\tand tabs"),
        ("del\x7f c1\x9b", f"del{_ctl('7f')} c1{_ctl('9b')}"),
        ("<b>&</b>", "&lt;b&gt;&amp;&lt;/b&gt;"),
        ("<\x1b>", f"&lt;{_ctl('1b')}&gt;"),
    ],
)
def test_control_characters_are_shown_and_html_escaped(raw: str, shown: str) -> None:
    assert str(visible(raw)) == shown


def test_output_bytes_that_are_not_utf8_are_shown_replaced() -> None:
    assert str(output_text(b"ok \xff\x1b[1m\n")) == f"ok \ufffd{_ctl('1b')}[1m"


@pytest.mark.parametrize(
    ("ms", "text"),
    [(None, ""), (12, "12 ms"), (999, "999 ms"), (4200, "4.2 s"), (185_000, "3 min 5 s")],
)
def test_durations(ms: float | None, text: str) -> None:
    assert duration_text(ms) == text


def test_the_histogram_spans_the_used_buckets_only() -> None:
    bars = histogram([50, 60, 5200, 5300, 5400, 9999])
    assert [b.label for b in bars] == [
        "< 100 ms",
        "< 250 ms",
        "< 500 ms",
        "< 1.0 s",
        "< 2.5 s",
        "< 5.0 s",
        "< 10.0 s",
    ]
    assert [b.count for b in bars] == [2, 0, 0, 0, 0, 0, 4]
    assert bars[-1].percent == 100.0
    assert bars[0].percent == 50.0
    assert histogram([]) == []
    assert histogram([EDGES_MS[-1] * 2])[0].label == "≥ 5 min 0 s"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.5.0.9", True), ("::1", True), ("localhost", True),
     ("0.0.0.0", False), ("10.0.0.5", False), ("console.example", False)],
)  # fmt: skip
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_serving_beyond_loopback_needs_a_token() -> None:
    with pytest.raises(SettingsError, match="FLEETRUN_WEB_TOKEN"):
        load(WebSettings, environ={"FLEETRUN_WEB_HOST": "0.0.0.0"})
    settings = load(
        WebSettings, environ={"FLEETRUN_WEB_HOST": "0.0.0.0", "FLEETRUN_WEB_TOKEN": "s3"}
    )
    assert settings.token is not None
    assert "s3" not in repr(settings)
