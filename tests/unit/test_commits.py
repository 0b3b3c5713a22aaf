"""Which offset a worker commits (streams/engine/transport.py, streams/engine/gaps.py): never
past an event still being processed, and past offsets the gap guard filled once they are done."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from aiokafka.structs import ConsumerRecord
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from streams.engine.delivery import Delivered, Inbox, ack_all
from streams.engine.gaps import FilledGap
from streams.engine.transport import Consumer, Transport

EVENTS = TP("events", 0)


class Message:
    """What the commit reads of a Faust message (weak-referenceable, as Faust's are)."""

    def __init__(self, offset: int, generation_id: int = 0) -> None:
        self.tp = EVENTS
        self.topic = EVENTS.topic
        self.offset = offset
        self.generation_id = generation_id
        self.acked = False
        self.tracked = True
        self.refcount = 0


@pytest.fixture
def consumer() -> Consumer:
    app = faust.App("commits-test", broker="kafka://127.0.0.1:1")
    app.topics._acking_topics.add(EVENTS.topic)  # acked, as an agent's input once subscribed

    async def ignore(*_: Any) -> None:
        return None

    consumer = Consumer(Transport(app.conf.broker_consumer, app), callback=ignore,
                        on_partitions_revoked=ignore, on_partitions_assigned=ignore)
    consumer._committed_offset[EVENTS] = 10  # the group's committed offset: the next to process
    return consumer


def _deliver(consumer: Consumer, *offsets: int, generation_id: int = 0) -> list[Message]:
    messages = [Message(offset, generation_id) for offset in offsets]
    for message in messages:
        consumer.track_message(message)  # type: ignore[arg-type]
    return messages


def _commit(consumer: Consumer) -> int | None:
    return consumer._filter_committable_offsets([EVENTS]).get(EVENTS)


def test_events_finished_after_one_still_in_flight_are_not_committed_past_it(consumer: Consumer) -> None:
    slow, *fast = _deliver(consumer, 10, 11, 12, 13)
    for message in fast:
        consumer.ack(message)  # type: ignore[arg-type]
    assert _commit(consumer) is None, "offset 10 is still being processed: a crash must redo it"
    consumer.ack(slow)  # type: ignore[arg-type]
    assert _commit(consumer) == 14


def test_the_commit_stops_right_below_the_first_event_in_flight(consumer: Consumer) -> None:
    messages = _deliver(consumer, 10, 11, 12, 13)
    for message in (messages[0], messages[1], messages[3]):
        consumer.ack(message)  # type: ignore[arg-type]
    assert _commit(consumer) == 12
    consumer._committed_offset[EVENTS] = 12  # what Faust records after committing
    consumer.ack(messages[2])  # type: ignore[arg-type]
    assert _commit(consumer) == 14, "the ack held back above the slow event is not forgotten"


def test_an_event_of_an_older_generation_does_not_hold_the_commit(consumer: Consumer) -> None:
    """It is redelivered from the committed offset; its old copy is never acked."""
    _deliver(consumer, 10, generation_id=-1)
    for message in _deliver(consumer, 10, 11):
        consumer.ack(message)  # type: ignore[arg-type]
    assert _commit(consumer) == 12


def test_offsets_the_gap_guard_filled_are_committed_with_the_event_that_revealed_them(
    consumer: Consumer,
) -> None:
    (revealing,) = _deliver(consumer, 15)
    event = SimpleNamespace(message=revealing, ack=lambda: consumer.ack(revealing))  # type: ignore[arg-type]
    assert _commit(consumer) is None
    FilledGap(event, consumer, range(10, 15)).ack()
    assert _commit(consumer) == 16


def _deliver_inputs(consumer: Consumer, *offsets: int) -> list[Delivered]:
    """What the drain loop hands the agent: a `Delivered` per record, tracked."""
    delivered = [Delivered(Message(offset), consumer) for offset in offsets]
    for event in delivered:
        event.tracked = True
        consumer.track_message(event)  # type: ignore[arg-type]
    return delivered


def test_events_acked_together_commit_as_if_acked_one_by_one(consumer: Consumer) -> None:
    """The ack loop acks each flush's events in one step (`ack_all`): the same commits as Faust's
    ack per message, the first event in flight still holding them back."""
    slow, *fast = _deliver_inputs(consumer, 10, 11, 12, 13)
    ack_all(consumer, fast)
    assert _commit(consumer) is None, "offset 10 is still being processed: a crash must redo it"
    assert all(event.acked for event in fast) and consumer._n_acked == 3
    ack_all(consumer, [slow, fast[0]])  # acked twice: counted once
    assert _commit(consumer) == 14 and consumer._n_acked == 4
    assert not consumer._unacked_messages, "a graceful stop waits for nothing acked"


def test_a_message_the_drain_loop_did_not_deliver_is_not_acked_in_a_batch_either(consumer: Consumer) -> None:
    """As every ack (streams/engine/gaps.py): skipped in a rebalance, it must be fetched again."""
    first, skipped = _deliver_inputs(consumer, 10, 11)
    skipped.tracked = False
    ack_all(consumer, [first, skipped])
    assert not skipped.acked
    assert _commit(consumer) == 11


def test_a_filled_gap_in_a_batch_is_acked_with_its_offsets(consumer: Consumer) -> None:
    before, revealing = _deliver_inputs(consumer, 10, 15)
    ack_all(consumer, [before, FilledGap(revealing, consumer, range(11, 15))])
    assert _commit(consumer) == 16



def test_a_message_redelivered_lower_in_the_same_generation_still_holds_the_commit(
    consumer: Consumer,
) -> None:
    """Offsets rise within a generation, so the first message in flight is the head of its
    partition's line; should one ever come lower, the commit still stops below it."""
    late, first, second = _deliver(consumer, 12, 10, 11)
    consumer.ack(second)  # type: ignore[arg-type]
    assert _commit(consumer) is None, "offset 10 is still being processed"
    consumer.ack(first)  # type: ignore[arg-type]
    assert _commit(consumer) == 12, "offset 12 is still being processed"
    consumer._committed_offset[EVENTS] = 12  # what Faust records after committing
    consumer.ack(late)  # type: ignore[arg-type]
    assert _commit(consumer) == 13


def test_acked_messages_are_let_go_once_the_ones_before_them_are(consumer: Consumer) -> None:
    """The lines of messages in flight hold a message only until it and those before it are
    acked: a worker's memory does not grow with the events it has finished."""
    events = _deliver_inputs(consumer, 10, 11, 12)
    ack_all(consumer, events[1:])
    assert consumer._in_flight.floor(0) == {EVENTS: 10}
    ack_all(consumer, events[:1])
    assert consumer._in_flight.floor(0) == {}
    assert not any(consumer._in_flight._lines.values()), "every finished message is let go"

def _record(topic: str, offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(topic, 0, offset, 0, 0, b"key", f"value {offset}".encode(), None, 3, 7, [])


def _fetched(consumer: Consumer, records: dict[TP, list[Any]]) -> list[tuple[TP, Any]]:
    """What `getmany` yields for one fetch of `records` (the fetch itself stubbed)."""
    async def next_records(timeout: float) -> tuple[dict[TP, list[Any]], None]:
        return records, None

    async def collect() -> list[tuple[TP, Any]]:
        return [pair async for pair in consumer.getmany(1.0)]

    consumer._wait_next_records = next_records  # type: ignore[method-assign]
    consumer.highwater = lambda tp: 100  # type: ignore[method-assign]
    return asyncio.run(collect())


def test_records_of_the_inputs_become_delivered_with_no_faust_message_between(consumer: Consumer) -> None:
    """`getmany` makes an input record a `Delivered` at once (what the drain loop tracks and the
    agent reads); a record of another topic (a changelog under recovery) stays Faust's message."""
    consumer.app.inbox = Inbox({EVENTS.topic})  # type: ignore[attr-defined]
    other = TP("changelog", 0)
    consumer.app.consumer_generation_id = 7  # type: ignore[misc]
    fetched = _fetched(consumer, {EVENTS: [_record("events", 10), _record("events", 11)],
                                  other: [_record("changelog", 3)]})
    inputs = [message for tp, message in fetched if tp == EVENTS]
    assert [type(message) for message in inputs] == [Delivered, Delivered]
    first = inputs[0]
    assert (first.topic, first.partition, first.offset, first.key, first.value, first.generation_id) == \
        ("events", 0, 10, b"key", b"value 10", 7)
    assert first.message is first and first.tp == EVENTS and not first.acked and not first.tracked
    [(_, changelog)] = [(tp, message) for tp, message in fetched if tp == other]
    assert isinstance(changelog, ConsumerMessage) and changelog.offset == 3
    assert consumer.app.monitor.tp_end_offsets == {EVENTS: 100, other: 100}


def test_a_fetch_while_the_flow_is_stopped_delivers_nothing_and_seeks_back(consumer: Consumer) -> None:
    """As Faust's own `getmany`: in a rebalance the records are dropped, and the consumer seeks
    back to the committed offsets to fetch them again; first, to the dropped records themselves
    (what the seek to the committed offsets does not cover: a changelog under recovery)."""
    consumer.app.inbox = Inbox({EVENTS.topic})  # type: ignore[attr-defined]
    sought: list[Any] = []

    async def perform_seek() -> None:
        sought.append("committed")

    async def seek_back(dropped: dict[TP, tuple[int, int]]) -> list[TP]:
        sought.append(dropped)
        return list(dropped)

    consumer.perform_seek = perform_seek  # type: ignore[method-assign]
    consumer._thread.seek_back = seek_back  # type: ignore[union-attr]
    consumer.flow_active = False
    assert _fetched(consumer, {EVENTS: [_record("events", 10)]}) == []
    assert sought == [{EVENTS: (10, 11)}, "committed"]
