"""`fleetrun status`: stored results and the collector's own counts, read sensibly together."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from fleetrun.cli.query import render_status
from schemas import RESULT_STATUSES
from tests.support.records import RID, T0


def _row(
    *,
    state: str | None = "completed",
    targets_total: int | None,
    stored: dict[str, int],
    counted: dict[str, int] | None,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "state": state,
        "command": "hostname",
        "targets": ["demo1", "fleetrun@demo1"],
        "principal": "alice",
        "submitted_at": T0,
        "targets_total": targets_total,
        "hosts_reported": sum(stored.values()),
        "reject_reason": None,
        "duration": timedelta(milliseconds=250),
    }
    for status in RESULT_STATUSES:
        row[status] = stored.get(status, 0)
        row[f"count_{status}"] = None if counted is None else counted.get(status, 0)
    return row


def _line(text: str, label: str) -> str | None:
    found = [line for line in text.splitlines() if line.startswith(label)]
    return found[0] if found else None


def test_a_request_whose_stored_results_match_its_counts_reads_as_before() -> None:
    row = _row(targets_total=3, stored={"ok": 2, "failed": 1}, counted={"ok": 2, "failed": 1})
    text = render_status(RID, row)
    assert _line(text, "hosts") == "hosts     3/3 reported: 2 ok, 1 failed"
    assert _line(text, "counted") is None
    assert _line(text, "duration") == "duration  0.250 s"


@pytest.mark.parametrize(
    ("stored", "counted", "counted_line"),
    [
        # one host spelt twice by a collector before de-duplication: 2 counted, 1 host name
        ({"ok": 1}, {"ok": 2}, "counted   2 ok (by the collector"),
        # a result still on its way to the sink (or dead-lettered)
        ({"ok": 1}, {"ok": 1, "unreachable": 1}, "counted   1 ok, 1 unreachable (by the"),
    ],
)
def test_the_collectors_counts_are_shown_when_stored_results_differ(
    stored: dict[str, int], counted: dict[str, int], counted_line: str
) -> None:
    text = render_status(RID, _row(targets_total=2, stored=stored, counted=counted))
    assert _line(text, "hosts") == f"hosts     1/2 reported: {next(iter(stored.values()))} ok"
    line = _line(text, "counted")
    assert line is not None
    assert line.startswith(counted_line)


def test_a_request_not_completed_has_no_counts_to_compare() -> None:
    text = render_status(
        RID, _row(state="accepted", targets_total=2, stored={"ok": 1}, counted=None)
    )
    assert _line(text, "hosts") == "hosts     1/2 reported: 1 ok"
    assert _line(text, "counted") is None


def test_results_without_any_status_say_the_total_is_unknown() -> None:
    row = _row(state=None, targets_total=None, stored={"ok": 1}, counted=None)
    text = render_status(RID, row)
    assert _line(text, "state") == "state     unknown (results only)"
    assert _line(text, "hosts") == (
        "hosts     1 reported (how many targets: not known until a collector accepts it): 1 ok"
    )


def test_a_cancelled_request_says_by_whom_and_why() -> None:
    row = _row(targets_total=2, stored={"ok": 1, "skipped": 1}, counted={"ok": 1, "skipped": 1})
    row |= {"cancelled_by": "oncall", "cancel_reason": "wrong hosts"}
    assert _line(render_status(RID, row), "cancelled") == "cancelled by oncall: wrong hosts"
    row |= {"cancel_reason": None}
    assert _line(render_status(RID, row), "cancelled") == "cancelled by oncall"
    assert (
        _line(render_status(RID, _row(targets_total=1, stored={}, counted=None)), "cancel") is None
    )


def test_the_audit_says_who_signed_and_which_rule_decided() -> None:
    row = _row(state="rejected", targets_total=None, stored={}, counted=None)
    row |= {
        "reject_reason": "denied by policy rule 'ops-web': parameter name …",
        "key_fingerprint": "SHA256:abc",
        "verified": True,
        "policy_rule": "ops-web",
        "template": "restart_service",
        "params": '{"name":"nginx; touch /tmp/x"}',
    }
    text = render_status(RID, row)
    assert _line(text, "signed") == "signed    by key SHA256:abc (verified)"
    assert _line(text, "policy") == "policy    rule ops-web"
    assert _line(text, "template") == "template  restart_service name=nginx; touch /tmp/x"
    unsigned = render_status(RID, row | {"verified": False, "key_fingerprint": None})
    assert _line(unsigned, "signed") == "signed    no (unverified)"
