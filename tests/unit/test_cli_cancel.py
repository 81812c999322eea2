"""`fleetrun cancel`'s pure parts: the record it builds, what it reads, and what it says."""

from __future__ import annotations

import pytest

from collector.outcome import KILLED, not_started
from fleetrun.cli.cancel import Story, build_cancel, finished_message, partition_of, verdict
from fleetrun.cli.errors import (
    EXIT_ALREADY_FINISHED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_WAIT_TIMEOUT,
    CliError,
)
from schemas import Cancel, ErrorInfo, Request, ResultStatus, Status, StatusCounts, limits
from tests.support.records import RID, make_result

BOB = Cancel(
    request_id=RID, principal="bob", reason="wrong hosts", submitted_at="2024-05-01T12:00:05Z"
)
REQUEST = Request(
    request_id=RID,
    submitted_at="2024-05-01T12:00:00Z",
    principal="alice",
    command="sleep 600",
    targets=("web[1-5]",),
)
AT = "2024-05-01T12:00:06Z"
KILLED_BY_BOB = ErrorInfo.bounded(KILLED, f"killed: {BOB.message}; sent TERM: the command ended")


def _completed(statuses: list[ResultStatus], cancel: Cancel | None = None) -> Status:
    counts = StatusCounts.of(statuses)
    return Status.completed(RID, counts, duration_ms=9, collector="c", cancel=cancel, at=AT)


def test_build_cancel_checks_the_reason() -> None:
    cancel = build_cancel(RID, "alice", "")
    assert (cancel.request_id, cancel.principal, cancel.reason) == (RID, "alice", None)
    with pytest.raises(CliError, match="--reason is 1,025 characters long; the limit is 1,024"):
        build_cancel(RID, "alice", "x" * (limits.MAX_CANCEL_REASON_CHARS + 1))
    with pytest.raises(CliError, match="--reason: "):
        build_cancel(RID, "alice", "bad \udcff byte")  # argv decoded with surrogateescape


def test_statuses_and_results_fold_into_the_story() -> None:
    story = Story(RID)
    seen = [story.known]
    story.requested = True
    seen.append(story.known)
    story.apply(Status.accepted(REQUEST, targets_total=5, collector="c"))
    seen.append(story.known)
    story.count(make_result(status="error", error=KILLED_BY_BOB))
    story.count(make_result(status="skipped", error=not_started(BOB.message).error))  # counted
    story.count(make_result(status="error", error=ErrorInfo(type="OSError", message="gone")))
    story.count(make_result(status="failed"))
    story.apply(_completed(["ok", "error", "skipped", "skipped", "skipped"], BOB))
    story.apply(_completed(["ok"] * 5))  # only the first final status counts
    seen.append(story.known)
    assert seen == ["unknown", "queued", "running", "finished"]
    assert story.killed == 1
    assert known_by(story) == "bob"


def known_by(story: Story) -> str | None:
    assert story.final is not None
    by = story.final.cancelled_by
    return by if isinstance(by, str) else None


def _story(
    *, final: Status | None = None, requested: bool = False, accepted: bool = False
) -> Story:
    return Story(RID, requested=requested, accepted=accepted, final=final, killed=1)


@pytest.mark.parametrize(
    ("story", "code", "line"),
    [
        (
            _story(accepted=True, final=_completed(["ok", "error", "skipped", "skipped"], BOB)),
            EXIT_OK,
            "cancelled: 2 hosts skipped, 1 killed (request cancelled by bob: wrong hosts; "
            "1 had finished)",
        ),
        (
            _story(final=Status.rejected(RID, BOB.message, collector="c", cancel=BOB, at=AT)),
            EXIT_OK,
            "cancelled before it ran: rejected (request cancelled by bob: wrong hosts)",
        ),
        (
            _story(accepted=True, final=_completed(["ok", "ok", "failed"])),
            EXIT_ALREADY_FINISHED,
            f"request already finished: completed at {AT} (2 ok, 1 failed); nothing to cancel",
        ),
        (
            _story(final=Status.rejected(RID, "unknown group @db", collector="c", at=AT)),
            EXIT_ALREADY_FINISHED,
            f"request already finished: rejected at {AT} (unknown group @db); nothing to cancel",
        ),
        (_story(), EXIT_NOT_FOUND, "unknown request (nothing to cancel): no request or status"),
        (_story(requested=True), EXIT_WAIT_TIMEOUT, "no collector has taken the request"),
        (_story(requested=True, accepted=True), EXIT_WAIT_TIMEOUT, "did not answer within 30s"),
    ],
    ids=["cancelled", "rejected-first", "finished", "rejected", "unknown", "queued", "running"],
)
def test_verdict(story: Story, code: int, line: str) -> None:
    got_code, got_line = verdict(story, waited_s=30)
    assert got_code == code
    assert got_line.startswith(line) or line in got_line


def test_a_request_cancelled_before_is_said_so() -> None:
    earlier = _story(final=_completed(["skipped"], BOB))
    code, _ = verdict(earlier, waited_s=1)
    assert code == EXIT_OK  # the answer to this cancel: it is cancelled
    assert earlier.final is not None
    assert finished_message(earlier.final).startswith("request already cancelled by bob:")


@pytest.mark.parametrize(
    ("key", "partitions", "expected"),
    # Java's Utils.murmur2 vectors (Kafka's UtilsTest): "21" → -973932308, "abc" → 479470107.
    [(b"21", 6, 0), (b"abc", 6, 3), (b"abc", 12, 479470107 % 12)],
)
def test_partitions_are_the_java_clients(key: bytes, partitions: int, expected: int) -> None:
    assert partition_of(key, set(range(partitions))) == expected
