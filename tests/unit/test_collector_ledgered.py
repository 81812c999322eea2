"""A request's run with the ledger: marks ahead, marks at launch, released on handover."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from collector.ledger import PartitionLedger
from collector.ledgered import LedgeredRun
from collector.outbox import HandedOver, MarkItem, Out, Outbox
from collector.resume import Lane
from tests.support.fakes import FakeHost

RID = "0b7e7f4e-3c1a-4f38-9d7e-2f1f4a6f1c11"


class RecordingOutbox(Outbox):
    """Commits every write at once: its marks encoded through the lane (which keeps the
    ledger's state, as the real outbox does) and remembered."""

    def __init__(self) -> None:  # no producer: nothing here reaches Kafka
        self.marks: list[MarkItem] = []
        self.lane: Lane | None = None

    async def write(self, records: Sequence[Out], marks: Sequence[MarkItem] = ()) -> None:
        assert self.lane is not None
        for request_id, phase, mark in marks:
            self.lane.encode_marks(request_id, phase, [mark])
        self.marks.extend(marks)


def _run(
    base: dict[tuple[str, int, str], int] | None = None,
) -> tuple[LedgeredRun[FakeHost], RecordingOutbox]:
    outbox = RecordingOutbox()
    lane = Lane(outbox, PartitionLedger(0, collector="c"), "fleetrun.ledger")
    outbox.lane = lane
    waits: list[float] = []
    return LedgeredRun(RID, lane, base or {}, waits.append), outbox


def _host(name: str) -> FakeHost:
    return FakeHost(name)


async def test_a_host_marked_ahead_launches_without_another_write() -> None:
    run, outbox = _run()
    web1, web2 = _host("web1"), _host("web2")
    await run.reserve([web1, web2])
    assert [(phase, mark[0], mark[3]) for _, phase, mark in outbox.marks] == [
        ("started", "web1", 1),
        ("started", "web2", 1),
    ]
    await run.on_start(web1, 1)
    assert len(outbox.marks) == 2
    # A retry after a failed connect is a new attempt: marked right before it launches.
    await run.on_start(web2, 2)
    assert outbox.marks[-1][1:] == ("started", ("web2", web2.port, web2.user, 2, ""))
    assert not run.reserved


async def test_handover_releases_hosts_marked_ahead_that_never_launched() -> None:
    run, outbox = _run()
    hosts = [_host(f"web{i}") for i in range(1, 4)]
    await run.reserve(hosts)
    await run.on_start(hosts[0], 1)
    run.lane.handing_over = True
    with pytest.raises(HandedOver):
        await run.on_start(hosts[1], 1)  # not launched: the partition is being handed over
    with pytest.raises(HandedOver):
        await run.reserve([_host("web9")])
    await run.release()
    released = sorted(mark[0] for _, phase, mark in outbox.marks if phase == "released")
    assert released == ["web2", "web3"]
    prior = run.lane.ledger.prior(RID)
    assert prior is not None
    assert set(prior.unfinished()) == {("web1", hosts[0].port, hosts[0].user)}


async def test_idempotent_reruns_are_marked_and_numbered_after_the_earlier_attempt() -> None:
    web1 = _host("web1")
    endpoint = (web1.name, web1.port, web1.user)
    run, outbox = _run({endpoint: 1})
    await run.reserve([web1])
    assert outbox.marks[-1][2][3] == 2
    await run.release()
    assert outbox.marks[-1][1:] == ("released", (*endpoint, 2, ""))
