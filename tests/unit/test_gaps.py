"""Offsets Faust skipped are noticed (fetching them is tested on Kafka in tests/kafka/test_gaps.py)."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaException

from streams.engine.gaps import TP, GapGuard

EVENTS = ("events", 1)


class Guard(GapGuard):
    """A guard whose group has committed `committed` (or nothing) on every partition, whose
    partitions start at offset `low`."""

    def __init__(self, committed: int | None = None, low: int | None = None) -> None:
        super().__init__({}, "group")
        self._committed = committed
        self._low = low

    def committed(self, tp: TP, timeout_s: float = 10.0) -> int | None:
        return self._committed

    def low(self, tp: TP, timeout_s: float = 10.0) -> int:
        if self._low is None:
            raise KafkaException("no broker in a unit test")
        return self._low


async def _missing(guard: GapGuard, tp: TP, *offsets: int) -> list[list[int]]:
    return [list(await guard.missing(tp, offset)) for offset in offsets]


async def test_a_forward_jump_names_the_skipped_offsets_once() -> None:
    guard = Guard()
    assert await _missing(guard, EVENTS, 4, 5, 8, 9) == [[], [], [6, 7], []]
    assert await _missing(guard, ("events", 2), 100) == [[]], "each partition on its own"


async def test_the_quick_check_answers_only_when_nothing_was_skipped() -> None:
    offsets = (4, 5, 6, 9, 10, 3, 4, 12, 13)
    plain = await _missing(Guard(), EVENTS, *offsets)
    guard, seen = Guard(), []
    for offset in offsets:
        seen.append([] if guard.in_line(EVENTS, offset) else list(await guard.missing(EVENTS, offset)))
    assert seen == plain == [[], [], [], [7, 8], [], [], [], [5, 6, 7, 8, 9, 10, 11], []]
    guard.reset()
    assert not guard.in_line(EVENTS, 14), "after a rebalance the first message is checked in full"


async def test_going_back_is_a_redelivery_and_a_rebalance_starts_afresh() -> None:
    guard = Guard()
    assert await _missing(guard, EVENTS, 10, 11, 5, 6) == [[], [], [], []]
    guard.reset()
    assert await _missing(guard, EVENTS, 40) == [[]]


@pytest.mark.parametrize(("first", "skipped"), [(30, []), (29, []), (33, [30, 31, 32])])
async def test_after_a_rebalance_the_committed_offset_is_the_first_expected(
        first: int, skipped: list[int]) -> None:
    guard = Guard(committed=30)
    assert await _missing(guard, EVENTS, first) == [skipped]


def test_a_message_the_stream_skipped_is_not_acked() -> None:
    from types import SimpleNamespace

    from streams.engine.gaps import refuse_acks_of_skipped

    acked: list[int] = []
    consumer = SimpleNamespace(ack=lambda message: acked.append(message.offset) or True)
    refuse_acks_of_skipped(consumer, {"events"})
    refuse_acks_of_skipped(consumer, {"events"})  # twice is once
    delivered = SimpleNamespace(topic="events", partition=0, offset=1, tracked=True)
    skipped = SimpleNamespace(topic="events", partition=0, offset=2, tracked=False)
    other = SimpleNamespace(topic="changelog", partition=0, offset=3, tracked=False)
    assert [consumer.ack(m) for m in (delivered, skipped, other)] == [True, False, True]
    assert acked == [1, 3]


async def test_with_nothing_committed_the_partitions_first_offset_is_the_first_expected() -> None:
    guard = Guard(committed=None, low=0)
    assert await _missing(guard, EVENTS, 3, 4) == [[0, 1, 2], []]


async def test_a_partition_nobody_committed_is_read_from_its_beginning() -> None:
    from types import SimpleNamespace

    from faust.types import TP as FaustTP

    from streams.engine.gaps import seek_uncommitted_to_beginning

    events = [FaustTP("events", p) for p in range(4)]
    committed = {events[0]: 12, events[1]: None, events[2]: 0, events[3]: 5, FaustTP("changelog", 0): None}
    sought: list[tuple[FaustTP, int]] = []

    async def seek_to_committed() -> dict:
        return committed

    async def earliest_offsets(*tps: FaustTP) -> dict:
        return {tp: 3 for tp in tps}

    async def seek_wait(offsets: dict) -> None:  # Faust's seek in the consumer's thread
        sought.extend(offsets.items())

    # no `seek`: Faust's runs aiokafka's seek on the event loop's thread, not the consumer's
    consumer = SimpleNamespace(seek_to_committed=seek_to_committed, earliest_offsets=earliest_offsets,
                               seek_wait=seek_wait)
    seek_uncommitted_to_beginning(consumer, {"events"})
    assert await consumer.seek_to_committed() == committed
    assert sorted(sought) == [(events[1], 3), (events[2], 3)], "only input partitions without a commit"
