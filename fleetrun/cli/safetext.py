"""Host text made safe to show: control characters escaped, CSV cells kept out of formulas.

Host output, error messages and request fields are written by people and programs we do not
control. On a terminal an ESC or BEL sequence can retitle the window, clear the screen or write
the clipboard (OSC 52); in a spreadsheet a cell starting with `=` is a formula. Every
human-facing output (the CLI's reports, `--follow` lines, the web console) escapes through this
one module; `--json` and `--raw` do not, on purpose.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Final

# Controls other than newline and tab: C0 (ESC, BEL, CR, backspace…), DEL and C1 (CSI, OSC
# introducers that some terminals honour as single bytes).
CONTROL: Final = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

# What a spreadsheet reads as the start of a formula (OWASP's list: the four signs plus tab
# and carriage return, which some spreadsheets skip before looking for one).
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


def control_code(char: str) -> str:
    """`\\x1b` for ESC: how one control character is shown."""
    return f"\\x{ord(char):02x}"


def shown(text: str, show: Callable[[str], str] = control_code) -> str:
    """`text` with every control character but newline and tab replaced by `show(char)`."""
    return CONTROL.sub(lambda m: show(m.group()), text)


def shown_bytes(data: bytes) -> str:
    """Captured output as text to show: undecodable bytes as U+FFFD, controls escaped."""
    return shown(data.decode("utf-8", errors="replace"))


def csv_cell(text: str) -> str:
    """A CSV cell a spreadsheet will not evaluate: a leading formula character gets a `'`."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def write_out(text: str) -> None:
    """`text` and a newline to stdout; surrogates left by a `--raw` decode go out as the
    original bytes (print() would refuse them)."""
    sys.stdout.flush()
    sys.stdout.buffer.write(text.encode("utf-8", errors="surrogateescape") + b"\n")
    sys.stdout.buffer.flush()
