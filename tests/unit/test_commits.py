"""Which offset a worker commits (streams/engine/transport.py, streams/engine/gaps.py): never
past an event still being processed, and past offsets the gap guard filled once they are done."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.types import TP

from streams.engine.delivery import Delivered, ack_all
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


def test_events_acked_together_commit_as_if_acked_one_by_one(consumer: Consumer) -> None:
    """The ack loop acks each flush's events in one step (`ack_all`): the same commits as Faust's
    ack per message, the first event in flight still holding them back."""
    slow, *fast = _deliver(consumer, 10, 11, 12, 13)
    ack_all(consumer, [Delivered(message, consumer) for message in fast])
    assert _commit(consumer) is None, "offset 10 is still being processed: a crash must redo it"
    assert all(message.acked for message in fast) and consumer._n_acked == 3
    ack_all(consumer, [Delivered(slow, consumer), Delivered(fast[0], consumer)])  # acked twice: once
    assert _commit(consumer) == 14 and consumer._n_acked == 4
    assert not consumer._unacked_messages, "a graceful stop waits for nothing acked"


def test_a_message_the_drain_loop_did_not_deliver_is_not_acked_in_a_batch_either(consumer: Consumer) -> None:
    """As every ack (streams/engine/gaps.py): skipped in a rebalance, it must be fetched again."""
    first, skipped = _deliver(consumer, 10, 11)
    skipped.tracked = False
    ack_all(consumer, [Delivered(first, consumer), Delivered(skipped, consumer)])
    assert not skipped.acked
    assert _commit(consumer) == 11


def test_a_filled_gap_in_a_batch_is_acked_with_its_offsets(consumer: Consumer) -> None:
    before, revealing = _deliver(consumer, 10, 15)
    event = SimpleNamespace(message=revealing, ack=lambda: consumer.ack(revealing))  # type: ignore[arg-type]
    ack_all(consumer, [Delivered(before, consumer), FilledGap(event, consumer, range(11, 15))])
    assert _commit(consumer) == 16
