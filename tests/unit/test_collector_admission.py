"""Admission in the handler: signed, unsigned, tampered, wrong key, stale, denied, templates.

Each refusal is a `rejected` status with the reason and the audit fields, plus a dead letter,
and nothing runs (the fake executor starts no host)."""

from __future__ import annotations

import asyncio
import time
import tomllib
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NoReturn

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

import schemas
from collector.admission import Admission, Refused
from collector.confine import Override
from collector.kafka import Topics
from collector.ledger import PartitionLedger, Prior, digest
from collector.metrics import CollectorMetrics
from collector.outbox import MarkItem, Out, Outbox
from collector.policy import Policy
from collector.resume import Lane
from collector.settings import CollectorSettings
from collector.sshsig import AllowedSigners
from schemas import Request, Status, format_timestamp, known
from tests.support.fakes import FakeExecutor, FakePublisher, FakeRecord, fake_handler
from tests.support.signing import sign, write_allowed_signers

TOPICS = Topics.from_prefix("t.")
ALICE = ed25519.Ed25519PrivateKey.generate()
BOB = ed25519.Ed25519PrivateKey.generate()
STRANGER = ed25519.Ed25519PrivateKey.generate()
POLICY = Policy.parse(
    tomllib.loads(
        """
[templates.restart_service]
command = "systemctl restart {name}"
params.name = { one_of = ["nginx", "haproxy"] }

[[rules]]
name = "ops-web"
principals = ["alice", "bob"]
targets = ["@web"]
commands = ["uptime"]
templates = ["restart_service"]
"""
    )
)


@pytest.fixture
def signers(tmp_path: Path) -> AllowedSigners:
    return AllowedSigners.load(
        write_allowed_signers(tmp_path / "allowed_signers", {"alice": ALICE, "bob": BOB})
    )


def _request(**fields: object) -> Request:
    fields.setdefault("principal", "alice")
    if "template" not in fields:
        fields.setdefault("command", "uptime")
    fields.setdefault("targets", ["web[1-2]"])
    return Request.new(**fields)  # type: ignore[arg-type]


async def _handle(
    value: bytes,
    admission: Admission,
    metrics: CollectorMetrics | None = None,
    allow_targets: Collection[Override] = (),
) -> tuple[str, list[Status], FakeExecutor, FakePublisher]:
    pub, executor = FakePublisher(), FakeExecutor()
    handler = fake_handler(
        pub,
        executor,
        topics=TOPICS,
        admission=admission,
        metrics=metrics,
        allow_targets=allow_targets,
    )
    disposition = await handler.handle(FakeRecord(value, key=b"k", topic="t.requests"))
    return disposition, pub.statuses(TOPICS.status), executor, pub


def _rejected(statuses: list[Status], executor: FakeExecutor, pub: FakePublisher) -> Status:
    assert [s.state for s in statuses] == ["rejected"]
    assert executor.started == []
    assert len(pub.dead_letters(TOPICS.dlq)) == 1
    return statuses[0]


async def test_a_signed_allowed_request_runs_and_is_audited(signers: AllowedSigners) -> None:
    admission = Admission(signers=signers, policy=POLICY)
    value = schemas.encode(sign(_request(), ALICE))
    disposition, statuses, executor, _ = await _handle(value, admission)
    assert disposition == "completed"
    accepted = statuses[0]
    assert accepted.state == "accepted"
    assert known(accepted.verified) is True
    assert (known(accepted.key_fingerprint) or "").startswith("SHA256:")
    assert known(accepted.policy_rule) == "ops-web"
    assert sorted(executor.started) == ["web1", "web2"]


async def test_a_template_is_rendered_before_anything_sees_it(signers: AllowedSigners) -> None:
    admission = Admission(signers=signers, policy=POLICY)
    request = _request(template="restart_service", params={"name": "nginx"})
    _, statuses, executor, _ = await _handle(schemas.encode(sign(request, ALICE)), admission)
    accepted = statuses[0]
    assert (accepted.state, accepted.command) == ("accepted", "systemctl restart nginx")
    assert (known(accepted.template), known(accepted.params)) == (
        "restart_service",
        {"name": "nginx"},
    )
    assert sorted(executor.started) == ["web1", "web2"]


def _tampered(signers: AllowedSigners) -> bytes:
    signed = sign(_request(), ALICE)
    return schemas.encode(msgspec.structs.replace(signed, command="uname -a"))


def _duplicate_member_last(signers: AllowedSigners) -> bytes:
    # The signed document with a second "command" member: JSON parsers differ on which one
    # counts, so what was verified must be what runs, whichever that is.
    signed = schemas.encode(sign(_request(), ALICE))
    return signed[:-1] + b',"command":"rm -rf /"}'


async def test_duplicate_members_never_run_something_unsigned(signers: AllowedSigners) -> None:
    admission = Admission(signers=signers, policy=POLICY)
    signed = schemas.encode(sign(_request(), ALICE))
    for value in (
        signed.replace(b"{", b'{"command":"rm -rf /",', 1),
        _duplicate_member_last(signers),
    ):
        disposition, statuses, executor, _ = await _handle(value, admission)
        if disposition == "completed":  # both parsers read the signed member
            assert statuses[0].command == "uptime"
        else:
            assert "signature refused" in (known(statuses[0].reason) or "")
            assert executor.started == []


@pytest.mark.parametrize(
    ("make", "reason", "verified"),
    [
        (lambda s: schemas.encode(_request()), "unsigned request", False),
        (_tampered, "does not match the request", False),
        (
            lambda s: schemas.encode(sign(_request(), STRANGER)),
            "is not in the allowed signers file",
            False,
        ),
        (
            lambda s: schemas.encode(sign(_request(principal="bob"), ALICE)),
            "not allowed to sign for principal 'bob'",
            False,
        ),
        (
            lambda s: schemas.encode(sign(_request(), ALICE, namespace="git")),
            "namespace 'git', not 'fleetrun'",
            False,
        ),
        (
            lambda s: schemas.encode(
                sign(_request(submitted_at=format_timestamp(_ago(301))), ALICE)
            ),
            "stale request",
            True,  # the signature is good; the request is old
        ),
        (
            lambda s: schemas.encode(
                sign(_request(submitted_at=format_timestamp(_ago(-400))), ALICE)
            ),
            "in the future",
            True,
        ),
        (_duplicate_member_last, "does not match the request", False),
        (
            lambda s: schemas.encode(sign(_request(command="rm -rf /"), ALICE)),
            "denied by policy rule 'ops-web': command 'rm -rf /' is not allowed",
            True,
        ),
        (
            lambda s: schemas.encode(
                sign(
                    _request(template="restart_service", params={"name": "nginx; touch /tmp/x"}),
                    ALICE,
                )
            ),
            "parameter name: 'nginx; touch /tmp/x' is not one of nginx|haproxy",
            True,
        ),
    ],
    ids=[
        "unsigned",
        "tampered",
        "unknown-key",
        "key-not-for-principal",
        "other-namespace",
        "stale",
        "future",
        "duplicate-members",
        "policy-denied",
        "template-injection",
    ],
)
async def test_refusals_run_nothing_and_say_why(
    signers: AllowedSigners, make: object, reason: str, verified: bool
) -> None:
    admission = Admission(signers=signers, policy=POLICY)
    value = make(signers)  # type: ignore[operator]
    metrics = CollectorMetrics()
    disposition, statuses, executor, pub = await _handle(value, admission, metrics)
    assert disposition == "rejected"
    refusals = {
        why: metrics.registry.get_sample_value("fleetrun_collector_refusals_total", {"why": why})
        for why in ("unsigned", "signature", "stale", "policy")
    }
    assert sum(n or 0 for n in refusals.values()) == 1
    rejected = _rejected(statuses, executor, pub)
    assert reason in (known(rejected.reason) or "")
    assert known(rejected.verified) is verified
    if verified:
        assert (known(rejected.key_fingerprint) or "").startswith("SHA256:")
        if "policy" in reason or "parameter" in reason:
            assert known(rejected.policy_rule) == "ops-web"


async def test_without_policy_unsigned_requests_run_as_before() -> None:
    disposition, statuses, _executor, _ = await _handle(schemas.encode(_request()), Admission())
    assert disposition == "completed"
    assert known(statuses[0].verified) is False
    assert known(statuses[0].policy_rule) is None


async def test_require_signatures_without_policy(signers: AllowedSigners) -> None:
    admission = Admission(signers=signers, require_signatures=True)
    _, statuses, executor, pub = await _handle(schemas.encode(_request()), admission)
    assert "unsigned request" in (known(_rejected(statuses, executor, pub).reason) or "")
    value = schemas.encode(sign(_request(command="anything at all"), STRANGER))
    _, statuses, executor, pub = await _handle(value, admission)
    _rejected(statuses, executor, pub)
    value = schemas.encode(sign(_request(command="anything at all"), ALICE))
    disposition, statuses, _, _ = await _handle(value, admission)
    assert disposition == "completed"
    assert known(statuses[0].verified) is True


async def test_a_template_without_a_policy_is_refused() -> None:
    request = _request(template="restart_service", params={"name": "nginx"})
    _, statuses, executor, pub = await _handle(schemas.encode(request), Admission())
    assert "has no policy" in (known(_rejected(statuses, executor, pub).reason) or "")


async def test_the_window_is_a_setting(signers: AllowedSigners) -> None:
    admission = Admission(signers=signers, policy=POLICY, window_s=3600)
    value = schemas.encode(sign(_request(submitted_at=format_timestamp(_ago(1800))), ALICE))
    disposition, _, _, _ = await _handle(value, admission)
    assert disposition == "completed"
    admission = Admission(signers=signers, policy=POLICY, clock=lambda: time.time() + 1000)
    disposition, _, _, _ = await _handle(schemas.encode(sign(_request(), ALICE)), admission)
    assert disposition == "rejected"


def _ago(seconds: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)


async def test_edited_files_are_picked_up_and_a_broken_edit_keeps_the_last_good(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_allowed_signers(tmp_path / "allowed_signers", {"bob": BOB})
    policy = tmp_path / "policy.toml"
    policy.write_text('[[rules]]\nname = "any"\nprincipals = ["*"]\ncommands = ["*"]\n')
    settings = CollectorSettings(allowed_signers=path, policy=policy)
    admission = Admission.from_settings(settings, {"web": ["web[1-4]"]})
    signed = sign(_request(), ALICE)
    raw = schemas.encode(signed)
    with pytest.raises(Refused, match="not in the allowed signers file"):
        admission.verify(raw, signed)
    write_allowed_signers(path, {"alice": ALICE, "bob": BOB})
    assert (await _until(lambda: _verifies(admission, raw, signed))) is True
    path.write_text("alice ssh-ed25519 !!!\n")  # a broken edit
    await _until(lambda: _refreshed(admission) and "not reloaded" in caplog.text)
    assert _verifies(admission, raw, signed)


def _refreshed(admission: Admission) -> bool:
    admission.refresh()
    return True


def _verifies(admission: Admission, raw: bytes, request: Request) -> bool:
    try:
        return admission.verify(raw, request).verified
    except Refused:
        return False


async def _until(condition: Callable[[], object], timeout_s: float = 10.0) -> bool:
    """Poll `condition` (the files are checked every few seconds) until true, or fail."""
    deadline = time.monotonic() + timeout_s
    for _ in range(int(timeout_s / 0.05)):
        if condition():
            return True
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    raise AssertionError(f"not true within {timeout_s} s")


class _BrokenPolicy(Policy):
    def decide(self, *args: object, **kwargs: object) -> NoReturn:
        raise RuntimeError("a bug")


async def test_a_policy_that_cannot_decide_denies(signers: AllowedSigners) -> None:
    broken = _BrokenPolicy(POLICY.rules, POLICY.templates, POLICY.groups)
    admission = Admission(signers=signers, policy=broken)
    disposition, statuses, executor, pub = await _handle(
        schemas.encode(sign(_request(), ALICE)), admission
    )
    assert disposition == "rejected"
    assert "the policy could not decide (a bug)" in (
        known(_rejected(statuses, executor, pub).reason) or ""
    )


class _CommittingOutbox(Outbox):
    """Commits every write at once, keeping the ledger's state as the real outbox does."""

    def __init__(self) -> None:  # no producer: nothing here reaches Kafka
        self.records: list[Out] = []
        self.lane: Lane | None = None

    async def write(self, records: Sequence[Out], marks: Sequence[MarkItem] = ()) -> None:
        assert self.lane is not None
        for request_id, phase, mark in marks:
            self.lane.encode_marks(request_id, phase, [mark])
        self.records.extend(records)


async def test_a_redelivered_signed_request_past_the_window_is_a_duplicate_not_rejected(
    signers: AllowedSigners,
) -> None:
    outbox = _CommittingOutbox()
    lane = Lane(outbox, PartitionLedger(0, collector="c1"), "t.ledger")
    outbox.lane = lane
    admission = Admission(signers=signers, policy=POLICY)
    handler = fake_handler(FakePublisher(), FakeExecutor(), topics=TOPICS, admission=admission)
    record = FakeRecord(schemas.encode(sign(_request(), ALICE)), key=b"k", topic="t.requests")
    assert await handler.handle(record, lane) == "completed"
    written = len(outbox.records)
    admission.clock = lambda: time.time() + 3600  # an hour later, the same record again
    assert await handler.handle(record, lane) == "duplicate"
    assert len(outbox.records) == written
    fresh = FakeRecord(schemas.encode(sign(_request(), ALICE)), key=b"k", topic="t.requests")
    assert await handler.handle(fresh, lane) == "rejected"  # a new one that old is stale


async def test_a_request_resumed_from_an_earlier_owner_past_the_window_still_completes(
    signers: AllowedSigners,
) -> None:
    outbox = _CommittingOutbox()
    lane = Lane(outbox, PartitionLedger(0, collector="c1"), "t.ledger")
    outbox.lane = lane
    record = FakeRecord(schemas.encode(sign(_request(), ALICE)), key=b"k", topic="t.requests")
    # The ledger replayed an earlier owner's `running` entry: accepted then, never completed.
    request_id = schemas.decode_request(record.value).request_id
    lane.ledger.requests[request_id] = Prior(digest(record.value), at=datetime.now(UTC))
    admission = Admission(signers=signers, policy=POLICY, clock=lambda: time.time() + 3600)
    executor = FakeExecutor()
    handler = fake_handler(FakePublisher(), executor, topics=TOPICS, admission=admission)
    assert await handler.handle(record, lane) == "completed"
    assert sorted(executor.started) == ["web1", "web2"]


async def test_a_policy_without_signers_trusts_no_signature() -> None:
    admission = Admission(policy=POLICY)  # from_settings refuses this; built by hand it is safe
    value = schemas.encode(sign(_request(), ALICE))
    _, statuses, executor, pub = await _handle(value, admission)
    assert "no allowed signers" in (known(_rejected(statuses, executor, pub).reason) or "")


OVERRIDING = Policy.parse(
    tomllib.loads(
        """
[[rules]]
name = "alice-as-root"
principals = ["alice"]
targets = ["@web"]
commands = ["uptime"]
overrides = ["user"]

[[rules]]
name = "bob-as-himself"
principals = ["bob"]
targets = ["@web"]
commands = ["uptime"]
"""
    )
)


async def test_a_policy_rule_allows_an_override_for_its_principals_only(
    signers: AllowedSigners,
) -> None:
    # The operator allows no override (allow_targets empty): the policy widens it per rule.
    admission = Admission(signers=signers, policy=OVERRIDING)
    value = schemas.encode(sign(_request(targets=["root@web1"]), ALICE))
    disposition, statuses, executor, _ = await _handle(value, admission)
    assert disposition == "completed"
    assert known(statuses[0].policy_rule) == "alice-as-root"
    assert executor.started == ["web1"]

    value = schemas.encode(sign(_request(principal="bob", targets=["root@web1"]), BOB))
    _, statuses, executor, pub = await _handle(value, admission)
    rejected = _rejected(statuses, executor, pub)
    assert "choosing the login user is not allowed" in (known(rejected.reason) or "")
    assert known(rejected.policy_rule) == "bob-as-himself"


async def test_the_operators_overrides_hold_under_a_policy(signers: AllowedSigners) -> None:
    admission = Admission(signers=signers, policy=OVERRIDING)
    value = schemas.encode(sign(_request(principal="bob", targets=["web1:2222"]), BOB))
    disposition, _, executor, _ = await _handle(value, admission, allow_targets=["port"])
    assert (disposition, executor.started) == ("completed", ["web1"])
    _, statuses, executor, pub = await _handle(value, admission)
    rejected = _rejected(statuses, executor, pub)
    assert "choosing the port is not allowed" in (known(rejected.reason) or "")
