"""The fault suite's counting (pure): lost, doubled, run twice, outcome_unknown, orphans, and
the report's verdict."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

import schemas
from bench.faults.count import Row, Submitted, Trial, tally
from bench.faults.report import table
from schemas import ErrorInfo, Request, Result, Status, StatusCounts

EXAMPLES = Path(schemas.__file__).parent / "examples"
OK = schemas.decode_result((EXAMPLES / "result" / "valid-ok.json").read_bytes())
DONE = schemas.decode_status((EXAMPLES / "status" / "valid-completed.json").read_bytes())
HOSTS = ("a", "b", "c")


def _sub(tag: str = "t", *, rejected: bool = False, rid: str | None = None) -> Submitted:
    options = {"request_id": rid} if rid else {}
    request = Request.new(principal="p", command="true", targets=HOSTS, **options)
    return Submitted(request, HOSTS, tag, "sim", rejected=rejected)


def _result(sub: Submitted, host: str, attempt: int = 1, error: str | None = None) -> Result:
    if error is None:
        return msgspec.structs.replace(OK, request_id=sub.request_id, host=host, attempt=attempt)
    info = ErrorInfo(type=error, message="m")
    return msgspec.structs.replace(
        OK,
        request_id=sub.request_id,
        host=host,
        attempt=attempt,
        status="error",
        exit_status=None,
        error=info,
    )


def _done(sub: Submitted, n: int = len(HOSTS)) -> Status:
    return msgspec.structs.replace(
        DONE, request_id=sub.request_id, counts=StatusCounts.of(["ok"] * n), targets_total=n
    )


def _clean(
    sub: Submitted,
) -> tuple[list[Result], dict[tuple[str, str, int], int], dict[tuple[str, str], int]]:
    results = [_result(sub, h) for h in HOSTS]
    rows = {(sub.request_id, h, 1): 1 for h in HOSTS}
    runs = {(sub.tag, h): 1 for h in HOSTS}
    return results, rows, runs


def test_a_clean_run_counts_zeros() -> None:
    sub = _sub()
    results, rows, runs = _clean(sub)
    t = tally([sub], results, [_done(sub)], rows, runs, [])
    assert (t.lost, t.doubled, t.run_twice, t.orphans, t.status_anomalies) == (0, 0, 0, 0, 0)
    assert (t.results, t.executions) == (3, 3)


@pytest.mark.parametrize(
    ("what", "expected"),
    [
        ("no result on the topic", {"lost": 1}),
        ("no row", {"lost": 1}),
        ("a second result", {"doubled": 1}),
        ("a second attempt", {"doubled": 1}),
        ("a second row", {"doubled": 1}),
        ("ran twice", {"run_twice": 1}),
        ("orphan", {"orphans": 1}),
        ("two completed", {"status_anomalies": 1}),
        ("counts short", {"status_anomalies": 1}),
    ],
)
def test_each_fault_is_counted(what: str, expected: dict[str, int]) -> None:
    sub = _sub()
    results, rows, runs = _clean(sub)
    statuses = [_done(sub)]
    orphans: list[str] = []
    match what:
        case "no result on the topic":
            results = results[1:]
        case "no row":
            del rows[(sub.request_id, "a", 1)]
        case "a second result":
            results.append(_result(sub, "a"))
        case "a second attempt":
            results.append(_result(sub, "a", attempt=2))
        case "a second row":
            rows[(sub.request_id, "b", 1)] = 2
        case "ran twice":
            runs[(sub.tag, "c")] = 2
        case "orphan":
            orphans = ["sleep 3"]
        case "two completed":
            statuses.append(_done(sub))
        case "counts short":
            statuses = [_done(sub, 2)]
    t = tally([sub], results, statuses, rows, runs, orphans)
    counts = {k: getattr(t, k) for k in ("lost", "doubled", "run_twice", "orphans")}
    counts["status_anomalies"] = t.status_anomalies
    assert counts == {k: expected.get(k, 0) for k in counts}
    assert t.problems


def test_a_rejected_record_may_run_nowhere_and_outcome_unknown_is_counted() -> None:
    first = _sub("first")
    reuse = _sub("other", rejected=True, rid=first.request_id)
    results, rows, runs = _clean(first)
    results[0] = _result(first, "a", error="outcome_unknown")
    t = tally([first, reuse], results, [_done(first)], rows, runs, [])
    assert (t.run_twice, t.outcome_unknown, t.lost) == (0, 1, 0)
    t = tally([first, reuse], results, [_done(first)], rows, runs | {("other", "b"): 1}, [])
    assert t.run_twice == 1


def test_a_row_that_is_not_all_zeros_fails_and_says_why() -> None:
    sub = _sub()
    results, rows, runs = _clean(sub)
    good = Row(
        "x", "fault x", [Trial(0.0, 2.5)], tally([sub], results, [_done(sub)], rows, runs, [])
    )
    bad = Row("y", "fault y", [Trial(0.0)], tally([sub], results[1:], [_done(sub)], rows, runs, []))
    bad.checks["landed"] = False
    assert good.failed == []
    assert bad.failed == ["lost=1", "check failed: landed"]
    text = table([good.as_json(), bad.as_json()])
    assert "| fault x | 1 | 0 | 0 | 0 | 0 | 0 | 2.5 / 2.5 |" in text
    assert "| **FAIL** fault y | 1 | 1 | 0 | 0 | 0 | 0 | — |" in text
