"""`fleetrun run`: options become a valid request or one clear error."""

from __future__ import annotations

from datetime import timedelta

import pytest

from fleetrun.cli.errors import (
    EXIT_HOSTS_FAILED,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_WAIT_TIMEOUT,
    CliError,
)
from fleetrun.cli.follow import Progress
from fleetrun.cli.run import RunOptions, build_request, exit_code_for, parse_duration_s
from schemas import Status, parse_timestamp
from tests.support.records import RID, make_counts, make_result


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
    ],
)
def test_bad_options_are_one_clear_error(opts: RunOptions, message: str) -> None:
    with pytest.raises(CliError) as caught:
        build_request(opts, "p")
    assert message in str(caught.value)


def test_exit_codes() -> None:
    p = Progress(RID, total=2)
    assert exit_code_for(p) == EXIT_WAIT_TIMEOUT
    p.results = {"a": make_result(host="a"), "b": make_result(host="b")}
    p.completed = Status.completed(RID, make_counts(ok=2), duration_ms=1, collector="c")
    assert exit_code_for(p) == EXIT_OK
    p.results["b"] = make_result(host="b", status="failed", exit_status=1)
    assert exit_code_for(p) == EXIT_HOSTS_FAILED
    p.rejected = Status.rejected(RID, "bad", collector="c")
    assert exit_code_for(p) == EXIT_REJECTED


def test_a_chosen_request_id_is_used_and_checked() -> None:
    rid = "0B6E9C1A-5F0E-4A57-9D1C-2F2B7C8E4A10"
    assert build_request(RunOptions("true", ["h"], request_id=rid), "p").request_id == rid.lower()
    with pytest.raises(CliError, match="is not a request id"):
        build_request(RunOptions("true", ["h"], request_id="nope"), "p")
