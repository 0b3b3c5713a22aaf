"""Seeking back to records fetched and dropped (streams/engine/transport.py `rewind`), on a real
broker with aiokafka's real fetcher: the records are fetched again, in order, unless a seek moved
the partition after that fetch; on a compacted topic too, where a fetch can end past its last
record."""

from __future__ import annotations

import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from streams.engine.transport import positions_of, rewind
from tests.conftest import SettingsFactory


def make_topic(bootstrap: str, name: str, compacted: bool) -> None:
    config = {"cleanup.policy": "compact", "segment.ms": "100", "min.cleanable.dirty.ratio": "0.01",
              "delete.retention.ms": "0"} if compacted else {}
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, 1, 1, config=config)])[name].result(30)


def produce(bootstrap: str, topic: str, pairs: list[tuple[bytes, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for key, value in pairs:
        producer.produce(topic, value, key)
    assert producer.flush(30) == 0


async def fetch_all(consumer: AIOKafkaConsumer, tp: TopicPartition) -> list[int]:
    """Offsets of one fetch of `tp`, as Faust's getmany takes them (`getmany` with the partition)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        records = (await consumer.getmany(tp, timeout_ms=500)).get(tp, [])
        if records:
            return [record.offset for record in records]
    return []


async def test_dropped_records_are_fetched_again_unless_a_later_seek_moved_the_partition(
        settings_factory: SettingsFactory, unique: str) -> None:
    settings = settings_factory()
    topic = f"rewind-{unique}"
    make_topic(settings.bootstrap, topic, compacted=False)
    produce(settings.bootstrap, topic, [(b"k%d" % n, b"v%d" % n) for n in range(20)])
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_poll_records=8)
    await consumer.start()
    try:
        consumer.assign([tp])
        first = await fetch_all(consumer, tp)  # 0-7 (bounded as Faust's fetches are)
        fetched_to = positions_of(consumer, [tp])[tp]
        assert first == list(range(8)) and fetched_to == 8
        assert rewind(consumer, {tp: (3, fetched_to)}) == [tp]  # 3-7 dropped unseen
        assert await fetch_all(consumer, tp) == list(range(3, 11))  # they come again, in order

        moved_to = positions_of(consumer, [tp])[tp]
        consumer.seek(tp, 15)  # a recovery's seek after that fetch: it stands
        assert rewind(consumer, {tp: (5, moved_to)}) == []
        assert (await fetch_all(consumer, tp))[0] == 15
    finally:
        await consumer.stop()


async def test_a_fetch_of_a_compacted_topic_is_sought_back_from_where_it_ended(
        settings_factory: SettingsFactory, unique: str) -> None:
    settings = settings_factory()
    topic = f"rewind-compacted-{unique}"
    make_topic(settings.bootstrap, topic, compacted=True)
    for _ in range(30):  # many versions of three keys, in segments the cleaner can compact
        produce(settings.bootstrap, topic, [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")])
        time.sleep(0.02)
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([tp])
        offsets = await fetch_all(consumer, tp)
        fetched_to = positions_of(consumer, [tp])[tp]
        assert offsets and fetched_to >= offsets[-1] + 1  # past the last record (or its batch)
        assert rewind(consumer, {tp: (offsets[0], fetched_to)}) == [tp]
        assert (await fetch_all(consumer, tp))[0] == offsets[0]
    finally:
        await consumer.stop()
