"""The transactional producers' tuning that aiokafka has no setting for."""

from __future__ import annotations

import pytest
from aiokafka.producer import sender

from collector.lanes import TXN_RETRY_S, tighten_txn_retry


def test_the_retry_after_a_previous_transactions_markers_is_tightened(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # aiokafka reads this module constant on every CONCURRENT_TRANSACTIONS retry; if an upgrade
    # renames it, this fails and each transaction is 20 ms slower again (see collector/lanes).
    monkeypatch.setattr(sender, "BACKOFF_OVERRIDE", 0.02)
    tighten_txn_retry()
    assert sender.BACKOFF_OVERRIDE == TXN_RETRY_S
    assert TXN_RETRY_S < 0.005
