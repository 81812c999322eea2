"""`fleetrun run`: options become a valid request or one clear error."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

import schemas
from fleetrun.cli.errors import (
    EXIT_HOSTS_FAILED,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_WAIT_TIMEOUT,
    CliError,
)
from fleetrun.cli.follow import Progress
from fleetrun.cli.run import (
    DEFAULT_WAIT_FLOOR_S,
    WAIT_MARGIN_S,
    RunOptions,
    WaitLimit,
    build_request,
    default_wait_s,
    exit_code_for,
    parse_duration_s,
    parse_wait_timeout_s,
)
from schemas import ResultStatus, Status, parse_timestamp
from tests.support.records import RID, make_counts, make_request, make_result


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90.0), ("90s", 90.0), ("1.5s", 1.5), ("15m", 900.0), ("2h", 7200.0), ("250ms", 0.25)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration_s(text, "--timeout") == seconds


def test_options_become_a_request() -> None:
    opts = RunOptions(
        command="uname -r",
        targets=["web[01-03]", "!web02"],
        timeout="30s",
        concurrency=5,
        max_errors="10%",
        env=("LANG=C", "X_Y=a=b"),
        labels=("team=ops",),
        expires_in="10m",
    )
    request = build_request(opts, "alice@laptop")
    assert request.command == "uname -r"
    assert request.targets == ("web[01-03]", "!web02")
    assert request.timeout_s == 30.0
    assert request.concurrency == 5
    assert request.max_errors == "10%"
    assert dict(request.env) == {"LANG": "C", "X_Y": "a=b"}
    assert dict(request.labels) == {"team": "ops"}
    assert request.principal == "alice@laptop"
    assert request.expires_at is not None
    expires_in = parse_timestamp(request.expires_at) - parse_timestamp(request.submitted_at)
    assert expires_in == timedelta(minutes=10)


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        (RunOptions("true", []), "no targets"),
        (RunOptions("true", ["web[1-"]), "targets[0]: 'web[1-': '[' is never closed"),
        (RunOptions("true", ["h"], timeout="soon"), "--timeout 'soon'"),
        (RunOptions("true", ["h"], env=("lower=1",)), "env"),
        (RunOptions("true", ["h"], env=("NOVALUE",)), "--env 'NOVALUE': expected NAME=value"),
        (RunOptions("true", ["h"], max_errors="lots"), "--max-errors 'lots'"),
        (RunOptions("true", ["h"], timeout="999999h"), "timeout_s"),
        (RunOptions(None, ["h"]), "give either COMMAND or --template"),
        (RunOptions("true", ["h"], template="t"), "give either COMMAND or --template"),
        (RunOptions("true", ["h"], params=("a=1",)), "-p/--param goes with --template"),
        (RunOptions(None, ["h"], template="T"), "template: is not a valid template"),
        (RunOptions(None, ["h"], template="t", params=("a",)), "expected NAME=value"),
    ],
)
def test_bad_options_are_one_clear_error(opts: RunOptions, message: str) -> None:
    with pytest.raises(CliError) as caught:
        build_request(opts, "p")
    assert message in str(caught.value)


def test_a_template_request_has_params_and_no_command() -> None:
    opts = RunOptions(None, ["@web"], template="tail_log", params=("path=/var/log/a.log", "n=5"))
    request = build_request(opts, "p")
    assert request.template == "tail_log"
    assert request.params == {"path": "/var/log/a.log", "n": "5"}
    assert "command" not in schemas.as_document(request)


def _completed(**counts: int) -> Status:
    return Status.completed(RID, make_counts(**counts), duration_ms=1, collector="c")


def test_exit_codes() -> None:
    p = Progress(RID, total=2)
    p.add(make_result(host="a"))
    p.add(make_result(host="b"))
    assert exit_code_for(p) == EXIT_WAIT_TIMEOUT  # every result, but no completed status yet
    p.apply(_completed(ok=2))
    assert exit_code_for(p) == EXIT_OK
    p.add(make_result(host="b", status="failed", exit_status=1, attempt=2))
    assert exit_code_for(p) == EXIT_HOSTS_FAILED
    p.apply(Status.rejected(RID, "bad", collector="c"))
    assert exit_code_for(p) == EXIT_REJECTED


@pytest.mark.parametrize(
    ("read", "counts", "code"),
    [
        (["ok"], {"ok": 2}, EXIT_OK),  # a result not read, the collector says it was ok
        (["ok"], {"ok": 1, "failed": 1}, EXIT_HOSTS_FAILED),  # ...says it failed
        ([], {"unreachable": 1}, EXIT_HOSTS_FAILED),
        (["failed"], {"ok": 1}, EXIT_HOSTS_FAILED),  # what was read counts too
    ],
)
def test_completed_counts_decide_for_results_not_read(
    read: list[ResultStatus], counts: dict[str, int], code: int
) -> None:
    p = Progress(RID)
    for i, status in enumerate(read):
        p.add(make_result(host=f"h{i}", status=status))
    p.apply(_completed(**counts))
    assert p.missing == sum(counts.values()) - len(read)
    assert p.done == (p.missing == 0)
    assert exit_code_for(p) == code


def test_progress_is_done_when_completed_and_every_counted_result_is_in() -> None:
    p = Progress(RID)
    p.apply(Status.accepted(make_request(targets=["h[1-2]"]), targets_total=2, collector="c"))
    assert (p.accepted, p.total, p.expected, p.missing, p.done) == (True, 2, 2, 0, False)
    p.add(make_result(host="h1"))
    p.add(make_result(host="h2"))
    assert not p.done  # every result, but the collector has not said it is finished
    p.apply(_completed(ok=2))
    assert p.done


def test_results_are_kept_per_endpoint_not_per_name() -> None:
    # `h:22` and `h:2200` are two hosts with one name; waiting for both must be possible.
    p = Progress(RID)
    p.add(make_result(host="h", port=22))
    p.add(make_result(host="h", port=2200))
    p.add(make_result(host="h", port=22, user="other"))
    p.apply(_completed(ok=3))
    assert len(p.results) == 3
    assert p.done


def test_a_later_attempt_replaces_an_earlier_one_not_the_reverse() -> None:
    p = Progress(RID)
    p.add(make_result(host="h", status="failed", exit_status=1, attempt=1))
    p.add(make_result(host="h", status="ok", attempt=2))
    p.add(make_result(host="h", status="error", attempt=1))  # late duplicate of attempt 1
    assert [r.status for r in p.results.values()] == ["ok"]


def test_a_rejected_request_is_done_at_once() -> None:
    p = Progress(RID)
    p.apply(Status.rejected(RID, "no such group", collector="c"))
    assert p.done


@pytest.mark.parametrize(
    ("options", "targets_total", "seconds"),
    [
        ({}, None, DEFAULT_WAIT_FLOOR_S),  # 10 s connect + 60 s command: the floor wins
        ({}, 5_000, 50 * 70 + WAIT_MARGIN_S),  # 50 waves of 100 hosts
        ({"timeout": "2h"}, None, 7200 + 10 + WAIT_MARGIN_S),  # one long command
        ({"timeout": "2h"}, 1, 7200 + 10 + WAIT_MARGIN_S),
        ({"concurrency": 10, "retries": 2}, 95, 10 * (3 * 10 + 60) + WAIT_MARGIN_S),
        ({"concurrency": 10}, 10, DEFAULT_WAIT_FLOOR_S),
    ],
)
def test_the_default_wait_covers_the_request_in_waves(
    options: dict[str, Any], targets_total: int | None, seconds: float
) -> None:
    request = build_request(RunOptions("true", ["h"], **options), "p")
    assert default_wait_s(request, targets_total) == seconds


def test_the_wait_limit_moves_with_the_accepted_total_unless_fixed() -> None:
    request = build_request(RunOptions("true", ["h[1-1000]"], concurrency=1, timeout="1s"), "p")
    p = Progress(request.request_id)
    default = WaitLimit(request, started=100.0)
    fixed = WaitLimit(request, started=100.0, fixed_s=30.0)
    assert default.deadline(p) == 100.0 + DEFAULT_WAIT_FLOOR_S
    assert fixed.deadline(p) == 130.0
    p.apply(Status.accepted(request, targets_total=1000, collector="c"))
    assert default.deadline(p) == 100.0 + 1000 * (10 + 1) + WAIT_MARGIN_S
    assert fixed.deadline(p) == 130.0


@pytest.mark.parametrize("text", ["0", "0s", "0.0m"])
def test_waiting_always_ends(text: str) -> None:
    with pytest.raises(CliError, match=r"--wait-timeout .*: expected a positive duration"):
        parse_wait_timeout_s(text)
    assert parse_wait_timeout_s("90s") == 90.0


def test_a_chosen_request_id_is_used_and_checked() -> None:
    rid = "0B6E9C1A-5F0E-4A57-9D1C-2F2B7C8E4A10"
    assert build_request(RunOptions("true", ["h"], request_id=rid), "p").request_id == rid.lower()
    with pytest.raises(CliError, match="is not a request id"):
        build_request(RunOptions("true", ["h"], request_id="nope"), "p")
