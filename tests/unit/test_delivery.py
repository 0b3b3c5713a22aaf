"""The inputs' messages a fetch at a time (streams/engine/delivery.py) and the lean delivery of
the other topics (streams/engine/transport.py), through the drain loop itself."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

from mode.utils.queues import FlowControlEvent

from streams.engine.context import current_event, set_current
from streams.engine.delivery import Inbox
from streams.engine.transport import Consumer


class FakeConsumer:
    """Just what `Consumer._drain_messages` reads: one fetch of `messages`, then stopped."""

    def __init__(self, messages: list[Any], callback: Any) -> None:
        self.callback = callback
        self._stopped = asyncio.Event()
        self.suspend_flow = asyncio.Event()
        self.app = SimpleNamespace(flow_control=FlowControlEvent(initially_suspended=False),
                                   consumer_generation_id=1,
                                   topics=SimpleNamespace(acks_enabled_for=lambda topic: True))
        self._read_offset: dict[Any, int | None] = {"tp": None}
        self._commit_every = None
        self.diag = SimpleNamespace(set_flag=lambda flag: None, unset_flag=lambda flag: None)
        self.should_stop = False
        self.consumer_stopped_errors = ()
        self.waited_first = 0
        self._messages = messages
        self.tracked: list[int] = []
        self._unacked_messages: set[Any] = set()

    def track_message(self, message: Any) -> None:
        self.tracked.append(message.offset)
        self._unacked_messages.add(message.offset)

    async def _room_in_flight(self) -> None:
        await Consumer._room_in_flight(self)  # type: ignore[arg-type]

    async def _hand_over(self, inbox: Any, batch: list[Any], wait_for_room: bool = True) -> list[Any]:
        return await Consumer._hand_over(self, inbox, batch, wait_for_room)  # type: ignore[arg-type]

    def getmany(self, timeout: float) -> AsyncIterator[tuple[str, Any]]:
        async def fetched() -> AsyncIterator[tuple[str, Any]]:
            for message in self._messages:
                yield getattr(message, "tp", "tp"), message
            self._stopped.set()
        return fetched()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait_first(self, *coros: Any) -> None:
        """Faust's way: the first of the callback and the suspend flag."""
        self.waited_first += 1
        tasks = [asyncio.ensure_future(c) for c in coros]
        _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()


async def _drain(consumer: FakeConsumer) -> None:
    fetcher = SimpleNamespace(_stopped=asyncio.Event())
    await asyncio.wait_for(Consumer._drain_messages(consumer, fetcher), 2)  # type: ignore[arg-type]


async def test_while_the_flow_runs_each_message_is_delivered_directly_in_order() -> None:
    delivered: list[int] = []

    async def callback(message: Any) -> None:
        delivered.append(message.offset)

    consumer = FakeConsumer([SimpleNamespace(offset=n, topic="events") for n in range(4)], callback)
    await _drain(consumer)
    assert delivered == [0, 1, 2, 3]
    assert consumer.waited_first == 0
    assert consumer._read_offset["tp"] == 3


async def test_while_the_flow_is_stopped_a_blocked_delivery_does_not_stop_draining() -> None:
    """A table recovery needs this loop to go on delivering changelog messages."""
    delivered: list[int] = []
    never = asyncio.Event()

    async def callback(message: Any) -> None:
        if message.topic == "events":
            await never.wait()  # waits for the flow to resume, as Faust's conductor does
        delivered.append(message.offset)

    messages = [SimpleNamespace(offset=0, topic="events"), SimpleNamespace(offset=1, topic="changelog")]
    consumer = FakeConsumer(messages, callback)
    consumer.app.flow_control.suspend()
    consumer.suspend_flow.set()
    await _drain(consumer)
    assert delivered == [1]
    assert consumer.waited_first == 2


async def test_a_delivery_that_outlives_a_rebalance_does_not_move_the_read_offset() -> None:
    """The rebalance seeks back to the committed offset (and sets the read offset there); the late
    delivery's offset must not make the loop skip the messages fetched again from there."""
    async def callback(message: Any) -> None:
        await asyncio.sleep(0.01)  # e.g. waiting for the producer buffer to ebb, meanwhile:
        consumer.app.consumer_generation_id = 2  # a rebalance ...
        consumer._read_offset["tp"] = 3  # ... that sought back to the committed offset, 3

    consumer = FakeConsumer([SimpleNamespace(offset=7, topic="events")], callback)
    await _drain(consumer)
    assert consumer._read_offset["tp"] == 3


def _message(offset: int, topic: str = "events", generation: int = 1) -> SimpleNamespace:
    return SimpleNamespace(offset=offset, topic=topic, generation_id=generation, tracked=False)


async def _taken(inbox: Inbox) -> list[list[int]]:
    """The offsets of every list waiting in the inbox."""
    lists = []
    batches = inbox.batches()
    while inbox.depth():
        lists.append([d.message.offset for d in await anext(batches)])
    return lists


def _with_inbox(messages: list[Any], callback: Any = None) -> tuple[FakeConsumer, Inbox]:
    async def nothing(message: Any) -> None:
        raise AssertionError(f"an input message went through Faust's conductor: {message}")

    consumer = FakeConsumer(messages, callback or nothing)
    inbox = Inbox({"events", "retry"})
    consumer.app.inbox = inbox
    return consumer, inbox


async def test_a_fetch_of_the_inputs_comes_as_one_list_in_order_tracked_before_it_is_handed_over() -> None:
    consumer, inbox = _with_inbox([_message(n) for n in range(5)])
    await _drain(consumer)
    assert consumer.tracked == [0, 1, 2, 3, 4]
    assert await _taken(inbox) == [[0, 1, 2, 3, 4]]
    assert consumer._read_offset["tp"] == 4


async def test_a_delivered_message_is_acked_through_the_consumer() -> None:
    consumer, inbox = _with_inbox([_message(3)])
    acked: list[Any] = []
    consumer.ack = lambda message: acked.append(message.offset) or True  # type: ignore[attr-defined]
    await _drain(consumer)
    [delivered] = await anext(inbox.batches())
    set_current(delivered)  # what a lane does: Faust holds the current event by weak reference
    assert current_event() is delivered
    assert delivered.message is delivered  # what Faust's tables read of the current event
    assert delivered.ack()
    assert acked == [3]


async def test_inputs_of_an_older_generation_or_fetched_in_a_rebalance_are_dropped() -> None:
    """Faust seeks back to the committed offset at the end of the rebalance: they come again."""
    consumer, inbox = _with_inbox([_message(0, generation=0), _message(1), _message(2, generation=0)])
    await _drain(consumer)
    assert await _taken(inbox) == [[1]]
    assert consumer.tracked == [1]

    stopped, inbox = _with_inbox([_message(5), _message(6)])
    stopped.app.flow_control.suspend()
    stopped.suspend_flow.set()
    await _drain(stopped)
    assert inbox.depth() == 0
    assert stopped.tracked == []


async def test_other_topics_still_go_to_faust_in_fetch_order_with_the_inputs() -> None:
    """A standby's changelog messages go to Faust's conductor; the inputs fetched before one are
    handed over before it, so nothing is reordered."""
    seen: list[tuple[str, int]] = []
    consumer, inbox = _with_inbox([], None)

    async def callback(message: Any) -> None:
        seen.append(("conductor", message.offset))
        seen.append(("inbox had", inbox.depth()))

    consumer.callback = callback
    changelog = _message(7, topic="changelog")
    changelog.tp = "changelog-tp"
    consumer._read_offset["changelog-tp"] = None
    consumer._messages = [_message(0), _message(1), changelog, _message(2)]
    await _drain(consumer)
    assert seen == [("conductor", 7), ("inbox had", 2)]
    assert await _taken(inbox) == [[0, 1], [2]]


async def test_a_full_inbox_holds_the_fetch_back() -> None:
    consumer, inbox = _with_inbox([_message(n) for n in range(3)])
    inbox = Inbox({"events"}, max_waiting=1)
    consumer.app.inbox = inbox
    await inbox.put([])  # one list waits already
    draining = asyncio.ensure_future(_drain(consumer))
    await asyncio.sleep(0.05)
    assert not draining.done(), "the drain loop waits for room"
    assert consumer.tracked == [0, 1, 2]
    batches = inbox.batches()
    assert [d.message.offset for d in await anext(batches)] == []
    await asyncio.wait_for(draining, 1)
    assert [d.message.offset for d in await anext(batches)] == [0, 1, 2]


async def test_the_fetch_waits_while_too_many_delivered_messages_are_not_acked(
        monkeypatch: Any) -> None:
    """Events are acked after the flush that writes them: a fetch that ran ahead of the flushes
    made one flush of 200,000 events that held the loop for seconds."""
    from streams.engine import transport

    monkeypatch.setattr(transport, "MAX_IN_FLIGHT", 2)
    consumer, inbox = _with_inbox([_message(n) for n in range(3)])
    draining = asyncio.ensure_future(_drain(consumer))
    await asyncio.sleep(0.05)
    assert not draining.done() and inbox.depth() == 0, "three in flight, two allowed: it waits"
    consumer._unacked_messages.clear()  # the flush acked them
    await asyncio.wait_for(draining, 1)
    assert await _taken(inbox) == [[0, 1, 2]]


async def test_in_a_rebalance_the_fetch_does_not_wait_for_acks(monkeypatch: Any) -> None:
    """A rebalance's recovery needs the drain loop to go on delivering its changelog messages."""
    from streams.engine import transport

    monkeypatch.setattr(transport, "MAX_IN_FLIGHT", 0)
    consumer, inbox = _with_inbox([_message(0)])
    consumer._unacked_messages.add("an old one")
    draining = asyncio.ensure_future(_drain(consumer))
    await asyncio.sleep(0.05)
    assert not draining.done()
    consumer.suspend_flow.set()  # a rebalance began
    await asyncio.wait_for(draining, 1)
    assert inbox.depth() == 1  # handed over; the agent drops it as stale by its generation


def test_faust_s_monitor_sees_the_agent_take_each_partition_s_events() -> None:
    """Faust's consumer logs "Stream has not started processing" for a partition with a backlog
    whose stream it never saw take an event; the agent takes them from the inbox instead."""
    from faust.types import TP

    from streams.engine.delivery import Delivered
    from streams.engine.transport import EngineApp

    app = EngineApp("inbox-monitor-test", store="memory://")
    inbox = app.deliver_in_batches({"events"})
    tps = [TP("events", 0), TP("events", 3)]
    batch = [Delivered(SimpleNamespace(tp=tps[n % 2], topic="events", offset=n), None) for n in range(4)]

    async def take_one() -> list[Any]:
        await inbox.put(batch)
        async for taken in inbox.batches():
            return taken
        return []

    assert app.monitor.stream_inbound_time == {}
    assert asyncio.run(take_one()) == batch
    assert set(app.monitor.stream_inbound_time) == set(tps)
