"""Gathered fetches (streams/engine/fetches.py) on a real broker and aiokafka's real fetcher: while
records flow a fetch waits to gather more, an empty one puts the fetcher back to waking at the
first record, and every record still arrives, in order."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiokafka import AIOKafkaConsumer

from streams.engine.fetches import GATHER_BYTES, gather_fetches
from streams.tools.publisher import Publisher
from streams.tools.topics import create_topics
from tests.conftest import SettingsFactory
from tests.helpers import make_event


class Requests:
    """What each fetch asked the broker for (min bytes, max wait) and whether it brought records."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self.seen: list[tuple[int, int, bool]] = []
        fetcher = consumer._fetcher
        fetch = fetcher._proc_fetch_request

        async def spying(assignment: Any, node_id: int, request: Any) -> bool:
            brought: bool = await fetch(assignment, node_id, request)
            self.seen.append((request._min_bytes, request._max_wait_ms, brought))
            return brought

        fetcher._proc_fetch_request = spying

    def after(self, brought: bool) -> set[tuple[int, int]]:
        """What the fetches that followed one that did (or did not) bring records asked for."""
        pairs = zip(self.seen, self.seen[1:], strict=False)
        return {(b, w) for (_, _, before), (b, w, _) in pairs if before == brought}


async def take(consumer: AIOKafkaConsumer, count: int, within_s: float = 30.0) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + within_s
    while len(got) < count and time.monotonic() < deadline:
        for records in (await consumer.getmany(timeout_ms=200)).values():
            got.extend(json.loads(record.value or b"{}")["event_id"] for record in records)
    return got


async def test_fetches_gather_while_records_flow_and_wake_at_once_when_idle(
        settings_factory: SettingsFactory, unique: str) -> None:
    settings = settings_factory(ORDERFLOW_PARTITIONS="1")
    create_topics(settings)
    consumer = AIOKafkaConsumer(settings.events_topic, bootstrap_servers=settings.bootstrap,
                                group_id=f"fetches-{unique}", auto_offset_reset="earliest",
                                enable_auto_commit=False, fetch_max_wait_ms=500)
    await consumer.start()
    try:
        assert gather_fetches(consumer, 10)
        requests = Requests(consumer)
        assert await take(consumer, 1, within_s=1.0) == []
        publisher = Publisher(settings)
        sent: list[str] = []
        for burst in range(5):  # bursts with quiet spells between them
            events = [make_event(f"o{burst}-{i}", "created", client_id="c1") for i in range(100)]
            publisher.publish(events)
            sent += [e["event_id"] for e in events]
            await asyncio.sleep(0.3)
        assert await take(consumer, len(sent)) == sent  # every record, in order
        await take(consumer, 1, within_s=1.0)  # a quiet spell: the fetcher goes back to idle

        assert requests.after(brought=True) == {(GATHER_BYTES, 10)}
        assert requests.after(brought=False) == {(1, 500)}  # aiokafka's own, as configured
        assert any(brought for *_, brought in requests.seen)
    finally:
        await consumer.stop()


def test_a_fetcher_of_another_shape_is_left_alone() -> None:
    class Elsewhere:
        _fetcher = object()

    assert not gather_fetches(Elsewhere(), 10)
    assert not gather_fetches(Elsewhere(), 0)
