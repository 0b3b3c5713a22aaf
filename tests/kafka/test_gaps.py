"""The side consumer fetches exactly the offsets Faust skipped, and copes with holes."""

from __future__ import annotations

from streams.engine.gaps import GapGuard
from streams.tools.publisher import Publisher
from streams.tools.topics import create_topics
from tests.conftest import SettingsFactory


async def test_skipped_offsets_are_fetched_in_order(settings_factory: SettingsFactory) -> None:
    settings = settings_factory(ORDERFLOW_PARTITIONS="1")
    create_topics(settings)
    publisher = Publisher(settings)
    for n in range(10):
        publisher.send_raw("c1", f"message {n}".encode())
    assert publisher.flush().ok
    guard = GapGuard(settings.librdkafka(), settings.app_id)
    tp = (settings.events_topic, 0)
    fetched = await guard.fetch(tp, range(3, 6))
    assert [(offset, value) for offset, _key, value in fetched] == \
        [(3, b"message 3"), (4, b"message 4"), (5, b"message 5")]
    assert all(key == b"c1" for _offset, key, _value in fetched)
    beyond = await guard.fetch(tp, range(10, 12))  # nothing there (yet): returns, does not hang
    assert beyond == [] and guard.filled == 3


async def test_the_baseline_is_the_groups_committed_offset(settings_factory: SettingsFactory) -> None:
    from confluent_kafka import Consumer, TopicPartition

    settings = settings_factory(ORDERFLOW_PARTITIONS="1")
    create_topics(settings)
    guard = GapGuard(settings.librdkafka(), settings.app_id)
    tp = (settings.events_topic, 0)
    assert guard.committed(tp) is None, "a new group has committed nothing"
    committer = Consumer({**settings.librdkafka(), "group.id": settings.app_id})
    committer.commit(offsets=[TopicPartition(tp[0], 0, 4)], asynchronous=False)
    committer.close()
    assert guard.committed(tp) == 4
    assert list(await guard.missing(tp, 6)) == [4, 5], "the first message after a rebalance is checked"
