"""Hosts grouped by identical output, failures first, like clubak."""

from __future__ import annotations

from fleetrun.cli.grouping import group_results, reason_of, render_groups, summary_line
from schemas import ErrorInfo, Result, ResultStatus
from tests.support.records import make_result


def _result(
    host: str,
    status: ResultStatus = "ok",
    out: bytes = b"",
    *,
    exit_status: int | None = 0,
    error: ErrorInfo | None = None,
) -> Result:
    return make_result(host=host, status=status, stdout=out, exit_status=exit_status, error=error)


def test_identical_outputs_fold_into_one_block_and_failures_come_first() -> None:
    results = [
        _result("web01", out=b"6.1\n"),
        _result("web02", out=b"6.1\n"),
        _result("web03", out=b"6.1\n"),
        _result("web07", out=b"6.1\n"),
        _result("web04", "failed", b"", exit_status=2),
        _result(
            "web05",
            "unreachable",
            exit_status=None,
            error=ErrorInfo(type="ConnectTimeout", message="no answer in 10 s"),
        ),
    ]
    groups = group_results(results)
    assert [(g.folded, g.status) for g in groups] == [
        ("web05", "unreachable"),
        ("web04", "failed"),
        ("web[01-03,07]", "ok"),
    ]
    text = render_groups(groups)
    assert "web05 (1) unreachable: ConnectTimeout: no answer in 10 s" in text
    assert "web04 (1) failed: exit status 2" in text
    assert "web[01-03,07] (4) ok\n--------------------\n6.1" in text
    assert summary_line(results) == "6 hosts: 4 ok, 1 failed, 1 unreachable"


def test_different_outputs_stay_apart() -> None:
    groups = group_results([_result("a", out=b"x"), _result("b", out=b"y")])
    assert len(groups) == 2


def test_reasons() -> None:
    assert reason_of(_result("a")) is None
    assert reason_of(_result("a", "failed", exit_status=3)) == "exit status 3"
