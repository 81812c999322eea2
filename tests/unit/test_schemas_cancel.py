"""fleetrun.cancel/1 in Python: the words cancelled hosts and statuses use, the status fields."""

from __future__ import annotations

import pytest

import schemas
from schemas import Cancel, SchemaError, Status, StatusCounts, known, limits
from tests.support.records import RID

AT = "2024-05-01T12:00:05Z"


def _cancel(reason: str | None = "wrong hosts") -> Cancel:
    return Cancel(request_id=RID, principal="alice@example.com", reason=reason, submitted_at=AT)


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("wrong hosts", "request cancelled by alice@example.com: wrong hosts"),
        (None, "request cancelled by alice@example.com"),
    ],
)
def test_a_cancel_says_who_and_why(reason: str | None, message: str) -> None:
    assert _cancel(reason).message == message


def test_the_longest_cancel_still_fits_a_reason_and_an_error_message() -> None:
    cancel = Cancel(
        request_id=RID,
        principal="p" * limits.MAX_PRINCIPAL_CHARS,
        reason="r" * limits.MAX_CANCEL_REASON_CHARS,
        submitted_at=AT,
    )
    # Room to spare for what the results add around it ("killed: …; sent TERM …").
    assert len(cancel.message) + 200 < min(limits.MAX_REASON_CHARS, limits.MAX_ERROR_MESSAGE_CHARS)
    rejected = Status.rejected(RID, cancel.message, collector="c", cancel=cancel)
    assert schemas.decode_status(schemas.encode(rejected)) == rejected
    assert known(rejected.reason) == cancel.message


def test_new_stamps_the_time_and_drops_an_empty_reason() -> None:
    cancel = Cancel.new(RID, principal="bob", reason="")
    assert cancel.reason is None
    assert schemas.decode_cancel(schemas.encode(cancel)) == cancel
    assert schemas.parse_timestamp(cancel.submitted_at)  # a real, current timestamp


def test_a_reason_past_its_bound_is_refused_on_encode() -> None:
    cancel = Cancel.new(RID, principal="bob", reason="x" * (limits.MAX_CANCEL_REASON_CHARS + 1))
    with pytest.raises(SchemaError) as caught:
        schemas.encode(cancel)
    assert (caught.value.path, caught.value.rule) == ("reason", "maxLength")


COUNTS = StatusCounts.of(["ok", "skipped", "skipped", "error"])


@pytest.mark.parametrize(
    ("cancel", "wire"),
    [
        (None, {}),
        (_cancel(None), {"cancelled_by": "alice@example.com"}),
        (_cancel(), {"cancelled_by": "alice@example.com", "cancel_reason": "wrong hosts"}),
    ],
)
def test_completed_and_rejected_say_who_cancelled(
    cancel: Cancel | None, wire: dict[str, str]
) -> None:
    completed = Status.completed(RID, COUNTS, duration_ms=5, collector="c", cancel=cancel)
    rejected = Status.rejected(RID, "cancelled first", collector="c", cancel=cancel)
    for status in (completed, rejected):
        doc = schemas.as_document(status)
        assert {k: v for k, v in doc.items() if k.startswith("cancel")} == wire
        assert schemas.decode_status(schemas.encode(status)) == status
        assert schemas.known(status.cancelled_by) == wire.get("cancelled_by")
        assert schemas.known(status.cancel_reason) == wire.get("cancel_reason")


def test_a_cancel_on_the_wrong_topic_is_named_as_such() -> None:
    with pytest.raises(SchemaError, match=r"where fleetrun\.request/1 was expected"):
        schemas.decode_request(schemas.encode(_cancel()))
    assert schemas.decode(schemas.encode(_cancel())) == _cancel()
