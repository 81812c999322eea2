"""The Kafka stack's pure helpers."""

from __future__ import annotations

import base64
import uuid

import pytest

from stack import kafka

# urlsafe base64 of a first byte 0xF8 (bits 111110 = 62) starts with "-".
DASH_FIRST = uuid.UUID(bytes=bytes([0xF8]) + bytes(15))
PLAIN = uuid.UUID(bytes=bytes(16))


def test_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    assert base64.urlsafe_b64encode(DASH_FIRST.bytes).startswith(b"-")
    drawn = iter([DASH_FIRST, DASH_FIRST, PLAIN])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(drawn))

    cluster_id = kafka.new_cluster_id()

    assert cluster_id == "A" * 22
    assert next(drawn, None) is None


def test_cluster_id_is_a_kafka_uuid() -> None:
    ids = {kafka.new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    for cluster_id in ids:
        assert len(cluster_id) == 22
        assert base64.urlsafe_b64decode(cluster_id + "==") != bytes(16)
