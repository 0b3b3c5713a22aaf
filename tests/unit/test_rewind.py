"""No fetched record dropped for good (streams/engine/transport.py): records Faust's `getmany`
drops (the flow stopped, or their partition was paused, since the fetch) have their partition
sought back to them, unless a seek moved it after that fetch."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import mode.utils.logging
from aiokafka.consumer.subscription_state import SubscriptionState
from faust.transport.utils import DefaultSchedulingStrategy
from faust.types import TP

from streams.engine.transport import Consumer, Fetched, rewind, unserved

CHANGELOG, OTHER, EVENTS = TP("orders-changelog", 0), TP("orders-changelog", 2), TP("events", 0)


def record(tp: TP, offset: int) -> Any:
    return SimpleNamespace(topic=tp.topic, partition=tp.partition, offset=offset, key=b"k", value=b"v")


async def test_a_partition_where_the_fetch_left_it_is_sought_back_and_a_sought_one_stays() -> None:
    subscription = SubscriptionState()
    subscription.assign_from_user({CHANGELOG, OTHER})
    subscription.seek(CHANGELOG, 11)  # where the fetch of offsets 0-10 left it
    subscription.seek(OTHER, 40)  # a recovery's seek after the fetch of 0-5
    client = SimpleNamespace(_subscription=subscription, seek=subscription.seek)
    sought = rewind(client, {CHANGELOG: (0, 11), OTHER: (0, 6), EVENTS: (3, 9)})  # EVENTS: not assigned
    assert sought == [CHANGELOG]
    assignment = subscription.subscription.assignment  # type: ignore[union-attr]
    assert assignment.state_value(CHANGELOG).position == 0
    assert assignment.state_value(OTHER).position == 40


def test_the_unserved_records_of_a_fetch_start_after_the_served_ones() -> None:
    records = {CHANGELOG: [record(CHANGELOG, n) for n in (3, 4, 7)], EVENTS: [record(EVENTS, 9)]}
    assert unserved(records, {CHANGELOG: 1, EVENTS: 1}) == {CHANGELOG: (4, 8)}
    fetched = Fetched(records, {CHANGELOG: 12, EVENTS: 10})  # its batch ended past compacted records
    assert unserved(fetched, {}) == {CHANGELOG: (3, 12), EVENTS: (9, 10)}


class FakeConsumer:
    """What `Consumer.getmany` reads: one fetch of `records`; the flow may stop after `stop_after`
    records, and a partition may be paused after `pause_after`."""

    def __init__(self, records: Fetched, flow_active: bool = True, stop_after: int | None = None,
                 pause: tuple[TP, int] | None = None) -> None:
        self._records = records
        self.flow_active = flow_active
        self.should_stop = False
        self._active = set(records)
        self._buffered_partitions: set[TP] = set()
        self.app = SimpleNamespace(consumer_generation_id=3, inbox=None,
                                   monitor=SimpleNamespace(track_tp_end_offset=lambda tp, offset: None))
        self.scheduler = DefaultSchedulingStrategy()
        self.log = mode.utils.logging.CompositeLogger(logging.getLogger("test"))
        self.steps: list[str] = []
        self._stop_after = stop_after
        self._pause = pause
        self._thread = SimpleNamespace(seek_back=self._seek_back)

    async def _wait_next_records(self, timeout: float) -> tuple[Fetched, set[TP]]:
        return self._records, self._active

    async def _seek_back(self, dropped: dict[TP, tuple[int, int]]) -> list[TP]:
        self.steps.append(f"seek back {sorted(dropped.items())}")
        return list(dropped)

    async def perform_seek(self) -> None:
        self.steps.append("seek to committed")

    async def _seek_back_unserved(self, records: Any, served: dict[TP, int]) -> None:
        await Consumer._seek_back_unserved(self, records, served)  # type: ignore[arg-type]

    def _to_message(self, tp: TP, rec: Any) -> Any:
        return rec

    def highwater(self, tp: TP) -> int:
        return 100

    async def delivered(self) -> list[tuple[TP, int]]:
        out = []
        async for tp, message in Consumer.getmany(self, 1.0):  # type: ignore[arg-type]
            out.append((tp, message.offset))
            if self._stop_after is not None and len(out) >= self._stop_after:
                self.flow_active = False  # a rebalance began while the records were delivered
            if self._pause is not None and len(out) >= self._pause[1]:
                self._active.discard(self._pause[0])
        return out


def changelog_fetch() -> Fetched:
    return Fetched({CHANGELOG: [record(CHANGELOG, n) for n in range(4)]}, {CHANGELOG: 4})


async def test_records_fetched_as_the_flow_stopped_are_sought_back_before_the_seek_to_committed() -> None:
    consumer = FakeConsumer(changelog_fetch(), flow_active=False)
    assert await consumer.delivered() == []
    assert consumer.steps == [f"seek back {[(CHANGELOG, (0, 4))]}", "seek to committed"]


async def test_the_rest_of_a_fetch_is_sought_back_when_the_flow_stops_midway() -> None:
    consumer = FakeConsumer(changelog_fetch(), stop_after=2)
    assert await consumer.delivered() == [(CHANGELOG, 0), (CHANGELOG, 1)]
    assert consumer.steps == [f"seek back {[(CHANGELOG, (2, 4))]}"]


async def test_a_partition_paused_midway_is_sought_back_and_the_others_go_on() -> None:
    records = Fetched({CHANGELOG: [record(CHANGELOG, n) for n in range(3)],
                       EVENTS: [record(EVENTS, n) for n in range(10, 13)]}, {CHANGELOG: 3, EVENTS: 13})
    consumer = FakeConsumer(records, pause=(CHANGELOG, 2))  # round robin: changelog 0, events 10, ...
    delivered = await consumer.delivered()
    assert [offset for tp, offset in delivered if tp == EVENTS] == [10, 11, 12]
    assert [offset for tp, offset in delivered if tp == CHANGELOG] == [0]
    assert consumer.steps == [f"seek back {[(CHANGELOG, (1, 3))]}"]


async def test_a_fetch_delivered_whole_seeks_nothing() -> None:
    consumer = FakeConsumer(changelog_fetch())
    assert await consumer.delivered() == [(CHANGELOG, n) for n in range(4)]
    assert consumer.steps == []
