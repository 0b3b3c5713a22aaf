"""An agent's events a batch at a time: Faust's consumer and conductor, without its per-event stream.

Faust's stream iterator hands an agent one event per event-loop turn: it awaits `sleep(0)` before
each event, calls two sensors and sets the current event (about 7% of the processor's time per
event in bench/run.py). The conductor has already decoded the messages into the stream channel's
queue, so `batches` takes every event waiting there in one step. What the stream does per event
that matters is done here too:

- an event fetched in an older consumer generation, or while Faust's flow is stopped (a rebalance
  in progress), is dropped unseen: not tracked, never acked, redelivered from the committed offset;
- every other event is tracked as unacked (so Faust's commit and its graceful shutdown wait for it)
  and must be acked by the caller (`event.ack()`) when it is really done.

One thing Faust does is undone: it clears the channel's queue whenever the flow resumes. At the
end of a recovery it resumes the stream partitions and seeks them (awaiting the broker) *before*
resuming the flow, so events fetched in between, already past the fetch position, were cleared
unseen and never fetched again: lost, and the partition's commit stuck below them for good
(faust-streaming#596; our failover test caught it). Since stale events are dropped here by their
generation, the queue needs no clearing: it is taken out of the flow control's care.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import faust

MAX_BATCH = 1000


async def batches(stream: Any, max_size: int = MAX_BATCH) -> AsyncIterator[list[faust.EventT]]:
    """Lists of events, in channel (so partition) order: waits for one, then takes all queued."""
    app = stream.app
    queue = stream.channel.queue
    app.flow_control._queues.discard(queue)  # see the module's docstring: never cleared unseen
    consumer = app.consumer
    acks_enabled_for = app.topics.acks_enabled_for
    while True:
        try:
            taken = [await queue.get()]
            while len(taken) < max_size and not queue.empty():
                taken.append(queue.get_nowait())
        except StopAsyncIteration:  # the channel was closed (Faust throws this into its queue)
            return
        if not app.flow_control.is_active():
            continue
        generation = app.consumer_generation_id
        batch = []
        for event in taken:
            message = event.message
            if message.generation_id != generation:
                continue
            if not message.tracked and acks_enabled_for(message.topic):
                message.tracked = True
                consumer.track_message(message)
            batch.append(event)
        if batch:
            yield batch
