"""The agent's events in batches (streams/engine/batches.py) and the lean delivery
(streams/engine/transport.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

from mode.utils.queues import FlowControlEvent, ThrowableQueue

from streams.engine.batches import batches
from streams.engine.transport import Consumer


def _stream() -> SimpleNamespace:
    """A Faust-like stream: a channel queue under the app's flow control (cleared on resume, as
    Faust makes it), a consumer that records tracked messages."""
    tracked: list[int] = []
    consumer = SimpleNamespace(track_message=lambda m: tracked.append(m.offset))
    flow = FlowControlEvent(initially_suspended=False)
    app = SimpleNamespace(consumer=consumer, consumer_generation_id=2, flow_control=flow,
                          topics=SimpleNamespace(acks_enabled_for=lambda topic: True))
    queue = ThrowableQueue(flow_control=flow, clear_on_resume=True)
    return SimpleNamespace(app=app, channel=SimpleNamespace(queue=queue), tracked=tracked)


def _event(offset: int, generation: int = 2) -> SimpleNamespace:
    return SimpleNamespace(message=SimpleNamespace(offset=offset, topic="events", generation_id=generation,
                                                   tracked=False))


def _offsets(batch: list[Any]) -> list[int]:
    return [e.message.offset for e in batch]


async def test_everything_queued_comes_in_one_batch_in_order_and_is_tracked_once() -> None:
    stream = _stream()
    for offset in range(5):
        stream.channel.queue.put_nowait(_event(offset))
    it = batches(stream, max_size=3)
    assert _offsets(await anext(it)) == [0, 1, 2]
    assert _offsets(await anext(it)) == [3, 4]
    assert stream.tracked == [0, 1, 2, 3, 4]


async def test_an_empty_channel_is_waited_for() -> None:
    stream = _stream()
    it = batches(stream)
    waiting = asyncio.ensure_future(anext(it))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    stream.channel.queue.put_nowait(_event(7))
    assert _offsets(await asyncio.wait_for(waiting, 1)) == [7]


async def test_events_of_an_older_generation_or_a_stopped_flow_are_dropped_untracked() -> None:
    stream = _stream()
    for event in (_event(0, generation=1), _event(1), _event(2, generation=1)):
        stream.channel.queue.put_nowait(event)
    it = batches(stream)
    assert _offsets(await anext(it)) == [1]
    stream.app.flow_control.suspend()
    stream.channel.queue.put_nowait(_event(3))
    stream.channel.queue.put_nowait(_event(4))
    waiting = asyncio.ensure_future(anext(it))
    await asyncio.sleep(0.01)
    assert not waiting.done(), "events taken while the flow is stopped are not handed out"
    stream.app.flow_control.resume()
    stream.channel.queue.put_nowait(_event(5))
    assert _offsets(await asyncio.wait_for(waiting, 1)) == [5]
    assert stream.tracked == [1, 5]


async def test_events_queued_before_the_flow_resumes_are_not_cleared_unseen() -> None:
    """Faust resumes a recovered partition's fetching before it resumes the flow, which clears the
    channel queues: events fetched in between were lost (faust-streaming#596)."""
    stream = _stream()
    it = batches(stream)
    waiting = asyncio.ensure_future(anext(it))
    await asyncio.sleep(0)  # the agent is waiting on the queue, as it is during a recovery
    stream.channel.queue.put_nowait(_event(8))
    stream.channel.queue.put_nowait(_event(9))
    stream.app.flow_control.resume()  # what Faust does at the end of the recovery
    assert _offsets(await asyncio.wait_for(waiting, 1)) == [8, 9]


async def test_a_closed_channel_ends_the_batches() -> None:
    stream = _stream()
    stream.channel.queue._throw(StopAsyncIteration())
    assert [batch async for batch in batches(stream)] == []


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

    def getmany(self, timeout: float) -> AsyncIterator[tuple[str, Any]]:
        async def fetched() -> AsyncIterator[tuple[str, Any]]:
            for message in self._messages:
                yield "tp", message
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
