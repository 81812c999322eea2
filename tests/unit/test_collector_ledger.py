"""The execution ledger's state: replay, admission, and what closing a request writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from collector.ledger import LedgerError, PartitionLedger, digest

T0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
RID = "0b7e7f4e-3c1a-4f38-9d7e-2f1f4a6f1c11"


def _written(ledger: PartitionLedger) -> list[tuple[bytes, bytes | None]]:
    """A ledger's own records, as a new owner would replay them."""
    out: list[tuple[bytes, bytes | None]] = []
    entry = ledger.begin(RID, "d1", T0)
    assert entry is not None
    out.append(entry)
    out.append(
        ledger.marks_record(
            RID, "started", [("web1", 22, "u", 1, ""), ("web2", 22, "u", 1, "")], T0
        )
    )
    out.append(ledger.marks_record(RID, "done", [("web1", 22, "u", 1, "ok")], T0))
    return out


def test_replay_gives_done_and_unfinished_hosts() -> None:
    replayed = PartitionLedger(0, collector="next")
    for key, value in _written(PartitionLedger(0, collector="first")):
        replayed.apply(key, value)
    prior = replayed.prior(RID)
    assert prior is not None
    assert prior.digest == "d1"
    assert not prior.completed
    assert prior.done == {("web1", 22, "u"): (1, "ok")}
    assert prior.unfinished() == {("web2", 22, "u"): 1}
    assert replayed.admit(RID, "d1") == "resume"
    assert replayed.admit(RID, "other") == "reused"
    assert replayed.admit("another-id", "d1") == "new"


def test_finish_tombstones_marks_and_a_completed_request_is_a_duplicate() -> None:
    first = PartitionLedger(0, collector="first")
    records = _written(first)
    closing = list(first.finish(RID, T0))
    mark_keys = {key for key, _ in records[1:]}
    assert {key for key, value in closing if value is None} == mark_keys
    assert closing[-1][0] == RID.encode()
    assert closing[-1][1] is not None
    replayed = PartitionLedger(0, collector="next")
    for key, value in [*records, *closing]:
        replayed.apply(key, value)
    prior = replayed.prior(RID)
    assert prior is not None
    assert prior.completed
    assert not prior.started
    assert not prior.mark_keys
    assert replayed.admit(RID, "d1") == "duplicate"
    assert replayed.admit(RID, "d2") == "reused"


def test_a_request_running_here_is_a_duplicate_and_marks_keys_never_collide() -> None:
    one, two = PartitionLedger(0, collector="a"), PartitionLedger(0, collector="a")
    one.begin(RID, "d1", T0)
    assert one.admit(RID, "d1") == "duplicate"
    k1, _ = one.marks_record(RID, "started", [("h", 22, "u", 1, "")], T0)
    k2, _ = two.marks_record(RID, "started", [("h", 22, "u", 1, "")], T0)
    assert k1 != k2  # a new owner's marks never overwrite an earlier owner's under compaction


def test_expired_requests_are_forgotten_and_their_keys_returned() -> None:
    ledger = PartitionLedger(0, collector="a")
    ledger.begin(RID, "d1", T0)
    list(ledger.finish(RID, T0))
    assert ledger.expired(T0 + timedelta(days=1), timedelta(days=7)) == []
    assert ledger.expired(T0 + timedelta(days=8), timedelta(days=7)) == [RID.encode()]
    assert ledger.admit(RID, "d2") == "new"


def test_tombstone_of_a_request_entry_forgets_it() -> None:
    ledger = PartitionLedger(0, collector="a")
    for key, value in _written(PartitionLedger(0, collector="b")):
        ledger.apply(key, value)
    ledger.apply(RID.encode(), None)
    assert ledger.admit(RID, "d1") == "new"


def test_unreadable_records_raise_a_ledger_error() -> None:
    ledger = PartitionLedger(0, collector="a")
    with pytest.raises(LedgerError):
        ledger.apply(b"x", b"not json")
    with pytest.raises(LedgerError):
        ledger.apply(None, b"{}")


def test_digest_is_of_the_bytes() -> None:
    assert digest(b"a") == digest(b"a") != digest(b"b")


def test_released_marks_give_hosts_back_to_the_next_owner() -> None:
    first = PartitionLedger(0, collector="first")
    records = _written(first)
    # web3 was marked ahead and never launched; the collector stopped in order and released it.
    records.append(first.marks_record(RID, "started", [("web3", 22, "u", 1, "")], T0))
    records.append(first.marks_record(RID, "released", [("web3", 22, "u", 1, "")], T0))
    replayed = PartitionLedger(0, collector="next")
    for key, value in records:
        replayed.apply(key, value)
    prior = replayed.prior(RID)
    assert prior is not None
    assert prior.unfinished() == {("web2", 22, "u"): 1}  # web3 runs normally, web2 is unknown


def test_releasing_an_idempotent_rerun_keeps_the_attempt_before_it() -> None:
    ledger = PartitionLedger(0, collector="c")
    ledger.begin(RID, "d1", T0)
    ledger.marks_record(RID, "started", [("web1", 22, "u", 1, "")], T0)
    ledger.marks_record(RID, "started", [("web1", 22, "u", 2, "")], T0)  # rerun, marked ahead
    ledger.marks_record(RID, "released", [("web1", 22, "u", 2, "")], T0)
    prior = ledger.prior(RID)
    assert prior is not None
    assert prior.unfinished() == {("web1", 22, "u"): 1}
    # A release of an attempt that is not the last one started changes nothing.
    ledger.marks_record(RID, "released", [("web1", 22, "u", 5, "")], T0)
    assert prior.unfinished() == {("web1", 22, "u"): 1}
