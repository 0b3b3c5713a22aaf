"""The processor's input topics a fetched batch at a time: no Faust Event, channel or conductor
per message.

Faust's conductor turns every fetched message into an `Event` for each subscribed channel: an
asyncio lock, the flow-control and producer-buffer waits, a decode through the topic's schema, a
queue put, then the stream's (or our former `batches`') get and bookkeeping, several loop turns per
message. For the topics of an `Inbox` the drain loop (`transport.Consumer`) instead gathers the
records of each fetch into one list of `Delivered` and hands it to the inbox, which the agent
reads. A `Delivered` is made straight from aiokafka's record (no Faust message in between) and is
what Faust's consumer, its tables, our store and the ack loop read of a message and of an event:
topic, partition, offset, generation, key, value, its ack flags, `.message` (itself) and `.ack()`.

The rebalance guards are the stream's: a message fetched in an older consumer generation, or once
a rebalance has stopped the flow, is dropped unseen and never acked (Faust seeks back to the
committed offset when the rebalance ends, so it is fetched again); every other one is tracked as
unacked before it is handed over, so a commit never passes it and a graceful stop waits for it.
The inbox is not Faust's channel queue, so Faust's resume of the flow cannot clear it unseen
(faust-streaming#596). The agent stays subscribed to the topics, so Faust's subscription,
assignment and recovery are unchanged; it reads `inbox.batches()` instead of its stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Collection
from typing import Any

#: messages handed over in one list at most (a fetch is bounded by ORDERFLOW_MAX_POLL_RECORDS)
MAX_BATCH = 1000
#: lists waiting in the inbox before the drain loop waits (backpressure on fetching); each
#: message waiting is one in flight, walked by every garbage collection (bench/RESULTS.md, 2026-12-02)
MAX_WAITING = 2


class Delivered:
    """One fetched message of an input topic, in place of Faust's Event and its `ConsumerMessage`:
    the fields Faust's consumer, its tables and our code read of a message, in slots. It is its
    own `.message` (what Faust's tables and our store read of the current event)."""

    __slots__ = ("__weakref__", "_consumer", "acked", "generation_id", "key", "offset", "partition",
                 "refcount", "time_in", "topic", "tp", "tracked", "value")

    tp: Any
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    generation_id: int | None
    acked: bool
    tracked: bool
    refcount: int
    time_in: float | None

    def __init__(self, message: Any, consumer: Any) -> None:
        """From a message Faust built (or anything with its fields)."""
        self._consumer = consumer
        self.tp = getattr(message, "tp", None)
        self.topic = message.topic
        self.partition = getattr(message, "partition", 0)
        self.offset = message.offset
        self.key = getattr(message, "key", None)
        self.value = getattr(message, "value", None)
        self.generation_id = getattr(message, "generation_id", None)
        self.acked = False
        self.tracked = False
        self.refcount = 0
        self.time_in = None

    @classmethod
    def of_record(cls, tp: Any, record: Any, generation_id: int, consumer: Any) -> Delivered:
        """From aiokafka's fetched record, with no Faust message in between."""
        delivered = cls.__new__(cls)
        delivered._consumer = consumer
        delivered.tp = tp
        delivered.topic = record.topic
        delivered.partition = record.partition
        delivered.offset = record.offset
        delivered.key = record.key
        delivered.value = record.value
        delivered.generation_id = generation_id
        delivered.acked = False
        delivered.tracked = False
        delivered.refcount = 0
        delivered.time_in = None
        return delivered

    @property
    def message(self) -> Delivered:
        return self

    def ack(self) -> bool:
        """Mark the message done; Faust commits up to the first message not done (and not past
        one in flight: transport.Consumer)."""
        return bool(self._consumer.ack(self))


def ack_all(consumer: Any, events: list[Any]) -> None:
    """Ack finished events in one step: `Delivered` ones through the consumer's `ack_delivered`
    (transport.Consumer), anything else standing in for one (a `gaps.FilledGap`) by its own ack."""
    messages = []
    for event in events:
        if type(event) is Delivered:
            messages.append(event)
        else:
            event.ack()
    if messages:
        consumer.ack_delivered(messages)


class Inbox:
    """The fetched messages of `topics`, a list per fetch, in each partition's order."""

    def __init__(self, topics: Collection[str], max_waiting: int = MAX_WAITING,
                 on_taken: Callable[[list[Delivered]], None] | None = None) -> None:
        self.topics = frozenset(topics)
        self._queue: asyncio.Queue[list[Delivered]] = asyncio.Queue(maxsize=max_waiting)
        self._waiting_messages = 0
        self._on_taken = on_taken  # told of each list as the agent takes it

    async def put(self, batch: list[Delivered]) -> None:
        """Hand a list over; waits while `max_waiting` lists wait already."""
        await self._queue.put(batch)
        self._waiting_messages += len(batch)

    async def batches(self) -> AsyncIterator[list[Delivered]]:
        """The lists, as they come (forever)."""
        while True:
            batch = await self._queue.get()
            self._waiting_messages -= len(batch)
            if self._on_taken is not None:
                self._on_taken(batch)
            yield batch

    def depth(self) -> int:
        """Messages handed over and not taken yet."""
        return self._waiting_messages
