"""What a new operator tripped over in an end-to-end run (issue 15, item 5), one test each."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from collector.outcome import not_started
from collector.settings import CollectorSettings
from fleetrun.cli.errors import EXIT_USAGE, CliError
from fleetrun.cli.follow import Progress
from fleetrun.cli.grouping import group_results, reason_of, render_groups
from fleetrun.cli.preview import fold_endpoints, preview
from fleetrun.cli.query import render_csv, render_requests, render_status
from fleetrun.cli.run import RunOptions, WaitLimit, build_request, print_report
from fleetrun.cli.settings import CliSettings
from fleetrun.runtime.settings import render
from schemas import RESULT_STATUSES, Status
from tests.support.records import RID, make_counts, make_request, make_result


@pytest.mark.parametrize(
    "targets",
    [
        ["a[1-60000]", "b[1-60000]"],  # two -t, each under the cap
        ["a[1-40000]", "b[1-40000]", "c[1-40000]"],
        ["a[1-100000]", "b1"],
    ],
)
def test_several_targets_past_the_cap_are_refused_like_one(targets: list[str]) -> None:
    with pytest.raises(CliError) as caught:
        build_request(RunOptions(command="true", targets=targets), "alice")
    assert caught.value.code == EXIT_USAGE
    assert "100,000 hosts" in str(caught.value)


@pytest.mark.parametrize(
    "targets",
    [
        ["a[1-60000]", "a[1-60000]"],  # the same hosts twice: 60,000
        ["a[1-60000]", "b[1-30000]", "!a[1-30000]"],  # 60,000 after the exclusion
        ["a[1-60000]", "@big", "b[1-40000]"],  # a group adds hosts only the collector knows
        ["a[1-60000]", "b[1-60000]", "!@half"],  # a group may remove any number of them
    ],
)
def test_targets_within_the_cap_or_not_countable_here_are_accepted(targets: list[str]) -> None:
    assert build_request(RunOptions(command="true", targets=targets), "alice").targets


def _status_row(**given: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "state": None,
        "command": None,
        "targets": None,
        "principal": None,
        "submitted_at": None,
        "targets_total": None,
        "hosts_reported": 0,
        "reject_reason": None,
        "duration": None,
        "duration_ms": None,
        **dict.fromkeys(RESULT_STATUSES, 0),
    }
    row.update(given)
    return row


def test_status_of_a_bare_request_row_shows_no_none_and_no_question_mark() -> None:
    text = render_status(RID, _status_row())
    assert "None" not in text
    assert "0/?" not in text
    assert "hosts     0 reported (how many targets: not known until a collector accepts it)" in (
        text.splitlines()
    )


def test_status_shows_the_duration_postgresql_has() -> None:
    # The completed status's duration (the collector's, stored in requests.duration_ms) is the
    # request's; the stored results span none here (all skipped before starting).
    row = _status_row(state="completed", targets_total=2, skipped=2, duration_ms=1500)
    assert "duration  1.500 s" in render_status(RID, row).splitlines()
    # Before completion: what the stored results span.
    row = _status_row(state="accepted", targets_total=2, ok=1, duration=timedelta(seconds=2))
    assert "duration  2.000 s" in render_status(RID, row).splitlines()


def test_requests_list_shows_no_question_marks_for_unknown_totals() -> None:
    row: dict[str, Any] = {
        "request_id": RID,
        "submitted_at": None,
        "state": None,
        "hosts_reported": 0,
        "targets_total": None,
        "command": None,
        **dict.fromkeys(RESULT_STATUSES, 0),
    }
    text = render_requests([row])
    assert "?" not in text
    assert "None" not in text


@pytest.mark.parametrize(
    ("status", "words"),
    [("skipped", "error budget (max_errors)"), ("expired", "had expired (expires_at)")],
)
def test_skipped_and_expired_say_why(status: Any, words: str) -> None:
    result = make_result(status=status, exit_status=None)
    reason = reason_of(result)
    assert reason is not None
    assert words in reason
    header = render_groups(group_results([result])).splitlines()[1]
    assert f"{status}: {status}" not in header
    assert words in header


def test_a_cancelled_host_says_its_reason_once() -> None:
    error = not_started("request cancelled by bob").error
    assert error is not None
    result = make_result(status="skipped", exit_status=None, error=error)
    assert reason_of(result) == "not started: request cancelled by bob"


def test_one_host_is_one_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FLEETRUN_INVENTORY", "FLEETRUN_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path / "empty.env"
    empty.write_text("")
    monkeypatch.setenv("FLEETRUN_ENV_FILE", str(empty))
    inventory = tmp_path / "inventory.toml"
    inventory.write_text('[defaults]\nuser = "ops"\n[hosts.demo1]\naddress = "10.0.0.1"\n')
    text = preview(CliSettings(inventory=inventory), ["demo1"])
    assert text.splitlines()[0] == "demo1 (1 host)"


def test_the_hosts_preview_keeps_differing_users_and_ports_apart() -> None:
    same = [("web1", "ops", 22), ("web2", "ops", 22)]
    assert fold_endpoints(same) == "web[1-2]"
    mixed = [("web1", "alice", 22), ("web2", "alice", 22), ("web1", "bob", 2200)]
    assert fold_endpoints(mixed) == "alice@web[1-2]:22 bob@web1:2200"


def test_csv_booleans_are_true_and_false() -> None:
    rows = render_csv([make_result(stdout=b"x", stdout_bytes=10)]).splitlines()
    header, row = rows[0].split(","), rows[1].split(",")
    values = dict(zip(header, row, strict=True))
    assert values["stdout_truncated"] == "true"
    assert values["stderr_truncated"] == "false"


def test_show_config_says_unset_not_none() -> None:
    text = render(CollectorSettings())
    assert "= None" not in text
    assert "FLEETRUN_COLLECTOR_SSH_CONFIG" in text
    line = next(x for x in text.splitlines() if x.startswith("FLEETRUN_COLLECTOR_SSH_CONFIG "))
    assert "= (unset)" in line


def test_the_grouped_report_and_its_summary_go_to_stdout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    request = make_request(targets=("web[1-2]",))
    progress = Progress(request.request_id)
    progress.add(make_result(request.request_id, "web1", stdout=b"hello\n"))
    progress.add(make_result(request.request_id, "web2", status="failed", stdout=b"no\n"))
    progress.apply(
        Status.completed(
            request.request_id, make_counts(ok=1, failed=1), duration_ms=5, collector="c1"
        )
    )
    diagnostics = Console(stderr=True)
    print_report(diagnostics, request, progress, 1, WaitLimit(request, time.monotonic()))
    out, err = capsys.readouterr()
    assert "web1 (1) ok" in out
    assert "2 hosts: 1 ok, 1 failed" in out
    assert "2 hosts" not in err
