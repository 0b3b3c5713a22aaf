"""The change feed: its producer's flush, and reading it (repeats after a crash dropped by
(order, version))."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from confluent_kafka import KafkaError

from streams.changes import new_versions
from streams.errors import BrokerError
from streams.feed import ChangeFeed


def test_a_redone_stretch_of_an_order_is_shown_once() -> None:
    # worker killed after sending o1 v2 and v3 and before committing: the survivor sends them again
    topic = [("o1", 1), ("o2", 1), ("o1", 2), ("o1", 3), ("o1", 2), ("o1", 3), ("o1", 4), ("o2", 2)]
    records = [{"order_id": o, "version": v} for o, v in topic]
    shown = [(r["order_id"], r["version"]) for r in new_versions(iter(records))]
    assert shown == [("o1", 1), ("o2", 1), ("o1", 2), ("o1", 3), ("o1", 4), ("o2", 2)]


class SlowProducer:
    """librdkafka's producer as a broker that takes a while: records left after the first flushes."""

    def __init__(self, left: list[int], refuse: bool = False) -> None:
        self.left, self.refuse, self.sent = left, refuse, []

    def produce(self, topic: str, value: bytes, key: bytes, on_delivery: Any) -> None:
        self.sent.append((key, value))
        self.on_delivery = on_delivery

    def poll(self, _timeout: float) -> int:
        return 0

    def flush(self, _timeout: float) -> int:
        if self.refuse:
            self.on_delivery(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED), None)
        return self.left.pop(0) if self.left else 0


def test_the_feed_flush_waits_for_a_slow_broker_and_fails_on_a_refused_record() -> None:
    feed = ChangeFeed({"bootstrap.servers": "127.0.0.1:1"}, "orders.changes", report_every_s=0.01)
    slow = SlowProducer(left=[3, 1])
    feed._producer = slow  # type: ignore[assignment]
    feed.send(b"c1", b"{}")
    asyncio.run(feed.flush())  # returns only once nothing is left
    assert slow.left == [] and slow.sent == [(b"c1", b"{}")]
    refused = SlowProducer(left=[], refuse=True)
    feed._producer = refused  # type: ignore[assignment]
    feed.send(b"c1", b"{}")
    with pytest.raises(BrokerError, match="refused"):
        asyncio.run(feed.flush())
