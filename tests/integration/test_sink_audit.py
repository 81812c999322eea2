"""The audit of admission decisions in PostgreSQL (migration 0006): accepted and rejected
requests keep the signing key, whether it verified, the policy rule, the template and its
parameters; refusals are rows too — who tried what, and why it was refused."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence

import msgspec
import pytest
from pydantic import SecretStr

from schemas import Audit, Status
from sink.app import run_migrations
from sink.partitions import Partitions
from sink.rows import request_row
from sink.settings import SinkSettings
from sink.store import RequestItem, Store, WriteBatch
from tests.support.fakes import FakeRecord
from tests.support.records import make_request
from tests.support.sink import fetch

FINGERPRINT = "SHA256:hkzR3kMRbX9mSejGwsj8vPM06/SCHUOoZTQGMVmRk6U"


@pytest.fixture
async def store(pg_dsn: str) -> AsyncIterator[Store]:
    settings = SinkSettings(pg_dsn=SecretStr(pg_dsn), topic_prefix="t.", id="sink-audit-1")
    await run_migrations(settings)
    s = Store(settings, Partitions(settings))
    await s.open()
    yield s
    await s.close(10)


def _items(statuses: Sequence[Status]) -> list[RequestItem]:
    return [
        (request_row(s), FakeRecord(b"{}", key=b"k", topic="t.status", offset=i))
        for i, s in enumerate(statuses)
    ]


async def test_refusals_and_acceptances_are_audited(store: Store) -> None:
    allowed = make_request(str(uuid.uuid4()), principal="alice")
    template = msgspec.structs.replace(
        make_request(str(uuid.uuid4()), principal="mallory"),
        command=msgspec.UNSET,
        template="restart_service",
        params={"name": "nginx; touch /tmp/x"},
    )
    unsigned = make_request(str(uuid.uuid4()), principal="eve")
    statuses = [
        Status.accepted(
            allowed,
            targets_total=4,
            collector="c-1",
            audit=Audit(key_fingerprint=FINGERPRINT, verified=True, policy_rule="ops-web"),
        ),
        Status.rejected(
            template.request_id,
            "denied by policy rule 'ops-web': parameter name: 'nginx; touch /tmp/x' is not one "
            "of nginx|haproxy",
            collector="c-1",
            request=template,
            audit=Audit(key_fingerprint=FINGERPRINT, verified=True, policy_rule="ops-web"),
        ),
        Status.rejected(
            unsigned.request_id,
            "unsigned request",
            collector="c-1",
            request=unsigned,
            audit=Audit(verified=False),
        ),
    ]
    # Twice, in reverse the second time: the merge keeps one row each, the same.
    await store.write(WriteBatch(requests=_items(statuses)))
    await store.write(WriteBatch(requests=_items(statuses[::-1])))
    rows = await fetch(
        store.settings.pg_dsn.get_secret_value(),
        "SELECT principal, state, key_fingerprint, verified, policy_rule, template, "
        "params->>'name', reject_reason FROM requests ORDER BY principal",
    )
    assert [tuple(r)[:7] for r in rows] == [
        ("alice", "accepted", FINGERPRINT, True, "ops-web", None, None),
        ("eve", "rejected", None, False, None, None, None),
        (
            "mallory",
            "rejected",
            FINGERPRINT,
            True,
            "ops-web",
            "restart_service",
            "nginx; touch /tmp/x",
        ),
    ]
    assert "is not one of nginx|haproxy" in rows[2][7]
