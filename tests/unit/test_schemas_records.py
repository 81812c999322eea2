"""The records' own rules, and Result's hand-written pattern checks against plan(Result).

The sink decodes every result, so Result.__post_init__ writes its pattern checks out by hand
instead of running check_patterns over plan(Result). These tests break every (field, pattern)
of the plan, one at a time and at random, and require the hand-written checks to refuse exactly
what the generic check_patterns refuses, with the same path, message and rule.
"""

from __future__ import annotations

import base64
import re
import types
from typing import Any, Final

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas
from schemas import Request, Result, SchemaError, Status, StatusCounts, known, limits
from schemas.patterns import Pattern, check_patterns, plan

RID: Final = "0b6e9c1a-5f0e-4a57-9d1c-2f2b7c8e4a10"
T0: Final = "2024-05-01T12:00:00Z"
T1: Final = "2024-05-01T12:00:00.150000Z"
# A valid result with every patterned field holding a string (exit_signal too).
FIELDS: Final[dict[str, Any]] = {
    "request_id": RID,
    "host": "web07.dc1",
    "port": 22,
    "user": "deploy",
    "attempt": 1,
    "status": "failed",
    "exit_status": None,
    "exit_signal": "KILL",
    "stdout": "5.15.0\n",
    "stderr": "",
    "stdout_encoding": "utf-8",
    "stderr_encoding": "utf-8",
    "stdout_bytes": 7,
    "stderr_bytes": 0,
    "stdout_truncated": False,
    "stderr_truncated": False,
    "stdout_sha256": "1" * 64,
    "stderr_sha256": schemas.EMPTY_SHA256,
    "started_at": T0,
    "finished_at": T1,
    "duration_ms": 150,
    "error": None,
    "collector": "collector-a",
    "labels": {"team": "web", "ticket": "CHG-1"},
}
RESULT_CHECKS: Final = plan(Result)


def _outcome(values: dict[str, Any]) -> Result | SchemaError:
    try:
        return Result(**values)
    except SchemaError as error:
        return error


def _generic(values: dict[str, Any]) -> SchemaError | None:
    """What check_patterns over plan(Result) says of the same values."""
    try:
        check_patterns(types.SimpleNamespace(**values), RESULT_CHECKS)
    except SchemaError as error:
        return error
    return None


def _breakers(pattern: Pattern, value: str) -> list[str]:
    """Values near `value` that break `pattern`, keeping the field's length bounds."""
    candidates = [value + "\n", value + "\x00", "\x00" + value, value.upper(), " " + value]
    broken = [c for c in candidates if not pattern.matches(c)]
    assert broken, (pattern, value)
    return broken


def _cases() -> list[tuple[str, dict[str, Any], str]]:
    """(description, changed fields, expected path) for every way to break every check."""
    cases = []
    for check in RESULT_CHECKS:
        for name in check.names:
            value = FIELDS[name]
            if check.where in ("fields", "optional"):
                for bad in _breakers(check.pattern, value):
                    cases.append((f"{name}={bad!r}", {name: bad}, name))
            elif check.where == "keys":
                for bad in _breakers(check.pattern, "team"):
                    labels = FIELDS["labels"] | {bad: "v"}
                    cases.append((f"{name} key {bad!r}", {name: labels}, f"{name}.{bad}"))
            else:
                assert check.where == "values"
                labels = FIELDS["labels"] | {"ticket": "CHG\x00"}
                cases.append((f"{name} value NUL", {name: labels}, f"{name}.ticket"))
    return cases


CASES: Final = _cases()


def test_the_valid_result_is_valid() -> None:
    assert isinstance(_outcome(FIELDS), Result)
    assert _generic(FIELDS) is None


def test_every_field_of_the_plan_is_broken_below() -> None:
    broken = {path.split(".")[0] for _, _, path in CASES}
    assert broken == {name for check in RESULT_CHECKS for name in check.names}


@pytest.mark.parametrize(("changes", "path"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hand_written_checks_enforce_the_plan(changes: dict[str, Any], path: str) -> None:
    values = FIELDS | changes
    generic = _generic(values)
    assert generic is not None
    assert (generic.path, generic.rule) == (path, "pattern")
    outcome = _outcome(values)
    assert isinstance(outcome, SchemaError), "Result took what its plan refuses"
    assert outcome.__reduce__() == generic.__reduce__()
    # And on the wire, where msgspec checks the bounds first: the same error.
    raw = msgspec.json.encode(values | {"schema": schemas.RESULT_SCHEMA})
    with pytest.raises(SchemaError) as caught:
        schemas.decode_result(raw)
    assert caught.value.__reduce__() == generic.__reduce__()


PATTERNED: Final = sorted(
    {name for c in RESULT_CHECKS for name in c.names if c.pattern is not schemas.fields.TIMESTAMP}
)
NEAR_CHARS: Final = "0af-AFZ:._@+%/\n\x00 é"


@st.composite
def _near(draw: st.DrawFn, value: str) -> str:
    for _ in range(draw(st.integers(1, 2))):
        at = draw(st.integers(0, len(value)))
        value = (
            value[:at] + draw(st.sampled_from(NEAR_CHARS)) + value[at + draw(st.integers(0, 1)) :]
        )
    return value


@st.composite
def _changed(draw: st.DrawFn) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(PATTERNED), min_size=1, max_size=3, unique=True)):
        if name == "labels":
            key = draw(_near("team") | st.sampled_from(["team", "-x", "a" * 63]))
            changes[name] = {key: draw(_near("web") | st.just("web"))}
        else:
            changes[name] = draw(_near(FIELDS[name]))
    return changes


@settings(max_examples=500, deadline=None)
@given(_changed())
def test_hand_written_checks_agree_with_check_patterns(changes: dict[str, Any]) -> None:
    values = FIELDS | changes
    generic, outcome = _generic(values), _outcome(values)
    if generic is None:
        assert isinstance(outcome, Result), outcome
    else:
        # Several broken fields may be reported in another order; each report is exact.
        assert isinstance(outcome, SchemaError)
        assert outcome.rule == "pattern"
        alone = _generic(FIELDS | {outcome.path.split(".")[0]: values[outcome.path.split(".")[0]]})
        assert alone is not None
        assert alone.__reduce__() == outcome.__reduce__()


def test_remembered_values_do_not_fool_result() -> None:
    schemas.decode_result(schemas.encode(Result(**FIELDS)))  # every value now remembered
    for name in ("request_id", "host", "stdout_sha256", "stderr_sha256"):
        with pytest.raises(SchemaError) as caught:
            Result(**FIELDS | {name: FIELDS[name] + "\n"})
        assert (caught.value.path, caught.value.rule) == (name, "pattern")
    with pytest.raises(SchemaError) as caught:
        Result(**FIELDS | {"labels": {"team\n": "web"}})
    assert (caught.value.path, caught.value.rule) == ("labels.team\n", "pattern")


# --- output streams ------------------------------------------------------------------------

MAX: Final = limits.MAX_OUTPUT_BYTES
_BASE64: Final = re.compile(
    schemas.load_schema("result")["$defs"]["base64"]["pattern"][:-1] + r"\Z"
)


def stream_rule(text: str, encoding: str, total: int, truncated: bool) -> str | None:
    """The stream rules of README and the result schema, from first principles: the rule a
    stream breaks first, or None."""
    if encoding == "utf-8":
        if "\x00" in text:
            return "pattern"
        try:
            size = len(text.encode())
        except UnicodeEncodeError:
            return "output"
    else:
        if not _BASE64.match(text):
            return "pattern"
        size = len(base64.b64decode(text))
    if size > MAX or size > total:
        return "output_size"
    if truncated != (size < total):
        return "truncated"
    return None


STREAM_TEXT = st.one_of(
    st.text(st.characters(max_codepoint=127), max_size=20),
    st.text(max_size=20),  # any code point: NUL, surrogates, astral
    st.binary(max_size=20).map(lambda b: base64.b64encode(b).decode()),
    st.binary(min_size=1, max_size=20).map(lambda b: base64.b64encode(b).decode() + "="),
    st.binary(max_size=20).map(lambda b: base64.b64encode(b).decode().rstrip("=")),
    st.binary(max_size=20).map(lambda b: base64.b64encode(b).decode() + "\n"),
    st.binary(max_size=20).map(lambda b: base64.urlsafe_b64encode(b).decode()),
)


@settings(max_examples=600, deadline=None)
@given(
    st.sampled_from(["stdout", "stderr"]),
    STREAM_TEXT,
    st.sampled_from(["utf-8", "base64"]),
    st.integers(-2, 2),
    st.booleans(),
)
def test_stream_rules(stream: str, text: str, encoding: str, slack: int, truncated: bool) -> None:
    size = len(text.encode(errors="surrogatepass")) if encoding == "utf-8" else len(text) * 3 // 4
    total = max(0, size + slack)
    changes = {
        stream: text,
        f"{stream}_encoding": encoding,
        f"{stream}_bytes": total,
        f"{stream}_truncated": truncated,
    }
    expected = stream_rule(text, encoding, total, truncated)
    outcome = _outcome(FIELDS | changes)
    if expected is None:
        assert isinstance(outcome, Result), outcome
        assert getattr(outcome, f"{stream}_data") == (
            text.encode() if encoding == "utf-8" else base64.b64decode(text)
        )
    else:
        assert isinstance(outcome, SchemaError)
        assert outcome.rule == expected, outcome
        assert outcome.path == (f"{stream}_truncated" if expected == "truncated" else stream)


@pytest.mark.parametrize(
    ("text", "encoding", "total", "truncated", "rule"),
    [
        ("a" * MAX, "utf-8", MAX, False, None),
        ("a" * MAX, "utf-8", MAX + 1, True, None),
        ("a" * (MAX + 1), "utf-8", MAX + 1, False, "output_size"),
        ("é" * (MAX // 2 + 1), "utf-8", MAX + 2, False, "output_size"),  # bytes, not characters
        (base64.b64encode(b"\x00" * MAX).decode(), "base64", MAX, False, None),
        (base64.b64encode(b"\x00" * (MAX + 1)).decode(), "base64", MAX + 1, False, "output_size"),
        ("abc", "utf-8", 3, True, "truncated"),
        ("abc", "utf-8", 4, False, "truncated"),
        ("abc", "utf-8", 2, True, "output_size"),
        ("\ud800", "utf-8", 3, False, "output"),
    ],
)
def test_stream_edges(
    text: str, encoding: str, total: int, truncated: bool, rule: str | None
) -> None:
    assert stream_rule(text, encoding, total, truncated) == rule
    changes = {
        "stdout": text,
        "stdout_encoding": encoding,
        "stdout_bytes": total,
        "stdout_truncated": truncated,
    }
    outcome = _outcome(FIELDS | changes)
    if rule is None:
        assert isinstance(outcome, Result)
    else:
        assert isinstance(outcome, SchemaError)
        assert outcome.rule == rule


# --- the other records' rules ---------------------------------------------------------------

REQUEST: Final = Request(
    request_id=RID, submitted_at=T0, principal="alice", command="uname -r", targets=("web01",)
)


@pytest.mark.parametrize(
    ("expires_at", "refused"),
    [
        ("2024-05-01T12:00:00.000001Z", False),
        ("2024-05-01T12:00:00Z", True),
        ("2024-05-01T14:00:00+02:00", True),  # the same instant, written in another zone
        ("2024-05-01T14:00:01+02:00", False),
        ("2024-05-01T11:59:59Z", True),
    ],
)
def test_a_request_expires_after_it_is_submitted(expires_at: str, refused: bool) -> None:
    if refused:
        with pytest.raises(SchemaError, match="must be after submitted_at") as caught:
            msgspec.structs.replace(REQUEST, expires_at=expires_at)
        assert (caught.value.path, caught.value.rule) == ("expires_at", "expires_at")
    else:
        assert msgspec.structs.replace(REQUEST, expires_at=expires_at).expires_at == expires_at


def test_a_blank_command_is_refused() -> None:
    with pytest.raises(SchemaError, match="is blank") as caught:
        msgspec.structs.replace(REQUEST, command=" \t\r\n")
    assert (caught.value.path, caught.value.rule) == ("command", "pattern")


def _status_rules() -> dict[str, list[str]]:
    """The fields each state requires, as the status schema file says."""
    out = {}
    for rule in schemas.load_schema("status")["allOf"]:
        out[rule["if"]["properties"]["state"]["const"]] = rule["then"]["required"]
    return out


STATUS: Final = Status.accepted(REQUEST, targets_total=1, collector="c", at=T0)
COUNTS: Final = StatusCounts.of(["ok", "failed"])


@pytest.mark.parametrize(
    ("state", "field"), [(s, f) for s, fs in _status_rules().items() for f in fs]
)
def test_each_state_requires_its_fields(state: str, field: str) -> None:
    full = schemas.as_document(STATUS) | {
        "state": state,
        "reason": "no",
        "counts": COUNTS.as_dict(),
        "duration_ms": 5,
        "targets_total": COUNTS.total,
    }
    assert schemas.decode_status(msgspec.json.encode(full)).state == state
    del full[field]
    with pytest.raises(SchemaError) as caught:
        schemas.decode_status(msgspec.json.encode(full))
    assert (caught.value.path, caught.value.rule) == (field, "required")
    assert caught.value.problem == f'is required when state is "{state}"'


def test_fields_a_state_does_not_carry_are_unset_and_left_out() -> None:
    completed = Status.completed(RID, COUNTS, duration_ms=5, collector="c", at=T0)
    assert completed.reason is msgspec.UNSET
    assert known(completed.reason) is None
    assert known(completed.counts) == COUNTS
    assert known(completed.targets_total) == 2
    document = schemas.as_document(completed)
    assert "reason" not in document  # left out, never null
    assert "submitted_at" not in document
    rejected = Status.rejected(RID, "no", collector="c", at=T0)
    assert known(rejected.targets) is None
    assert known(rejected.labels) is None


def test_counts_add_up_to_targets_total() -> None:
    with pytest.raises(SchemaError, match="add up to 2 but targets_total is 3") as caught:
        msgspec.structs.replace(
            Status.completed(RID, COUNTS, duration_ms=5, collector="c", at=T0), targets_total=3
        )
    assert (caught.value.path, caught.value.rule) == ("counts", "counts")


@pytest.mark.parametrize(
    ("record", "changes", "path"),
    [
        (REQUEST, {"targets": ("web01", "web 02")}, "targets[1]"),
        (REQUEST, {"env": {"PATH": "/bin", "lower": "x"}}, "env.lower"),
        (REQUEST, {"labels": {"team": "web", "ticket": "a\x00"}}, "labels.ticket"),
        (REQUEST, {"max_errors": "10 %"}, "max_errors"),
        (STATUS, {"targets": ("web01", "web\x00")}, "targets[1]"),
        (STATUS, {"principal": "a\x00"}, "principal"),
    ],
)
def test_check_patterns_names_the_broken_entry(
    record: Any, changes: dict[str, Any], path: str
) -> None:
    with pytest.raises(SchemaError) as caught:
        msgspec.structs.replace(record, **changes)
    assert (caught.value.path, caught.value.rule) == (path, "pattern")
