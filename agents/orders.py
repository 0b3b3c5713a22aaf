"""The order processor agent and its tick timer.

One agent reads `orders.events` and `orders.retry` (co-partitioned) without auto-acks. Each valid
event goes to its order's lane; a bad one goes straight to the dead letters. The retry topic carries
retry notices and *ticks*: every worker's timer sends a tick into each partition it owns, and the
tick, consumed like any event of that partition, fires due retries and park timeouts inside that
partition's stream context, so their table writes land in the right changelog partition and a
worker that takes the partition over carries on with them.

The agent is thin: the objects it hands events to are built when the worker starts
(streams/worker.py), not when this module is imported.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import faust

from schemas.envelope import decode
from streams import compiled
from streams.app import app, inbox, inputs, lifecycle, retry_topic, settings
from streams.core.deadletters import Source, dead_letter, key_of
from streams.engine.context import set_current
from streams.engine.delivery import Delivered
from streams.engine.flow import refetch_starved
from streams.engine.gaps import FilledGap, refuse_acks_of_skipped, seek_uncommitted_to_beginning
from streams.engine.logs import settle_root_level
from streams.engine.stalls import LoopTurn, watch_stalls
from streams.engine.supervision import HARD_EXIT_GRACE_S, watch_for_stuck
from streams.engine.waits import describe_waits
from streams.errors import InvalidEvent
from streams.index import Due
from streams.processor import EventJob
from streams.worker import agent_state, build, built, crash, is_current, worker

log = logging.getLogger(__name__)

TICK = b'{"kind":"tick"}'
DUE_PER_TICK = 500  # due orders one tick hands to the lanes, per partition (the rest: next tick)

# per partition: the due entries handed to the lanes, in this consumer generation (a job from an
# older one is skipped by its lane, without calling its done callback)
_due_in_flight: dict[int, tuple[int, set[str]]] = {}
_agent_queue: list[Any] = []  # the agent's channel queue, once it runs


def _source(event: Delivered) -> Source:
    return Source(event.message.topic, event.message.partition, event.message.offset)


@app.agent(inputs, name="process-orders")
async def process_orders(stream: Any) -> None:
    """Decode, validate, and hand each event to its order's lane; ticks fire timed work."""
    try:
        agent_state.running = True
        await _process(stream)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a crashed agent in a live worker would silently do nothing
        log.exception("the order agent crashed; stopping the worker so it is restarted")
        crash(exc)
        raise
    finally:
        agent_state.running = False


async def _process(stream: Any) -> None:
    inputs = {settings.events_topic, settings.retry_topic}
    refuse_acks_of_skipped(app.consumer, inputs)
    seek_uncommitted_to_beginning(app.consumer, inputs)
    _agent_queue.append(stream.channel.queue)
    w = worker()
    effects, gaps, lanes, events_topic = w.effects, w.gaps, w.lanes, settings.events_topic
    turn = LoopTurn(answers_awaited=lambda: effects.in_flight > 0)
    # the inputs' messages come from the fetch in lists, not through the stream (engine/delivery.py)
    async for batch in inbox.batches():
        for event in batch:
            if not is_current(event):  # fetched before a rebalance (during this batch): redelivered
                continue
            message = event.message
            partition = message.partition
            if message.topic == events_topic and gaps.in_line((events_topic, partition), message.offset):
                # almost always: one job, acked when done. Called here, not through a coroutine per
                # event; the lane sets the job's current event (the partition of its table writes)
                source = Source(events_topic, partition, message.offset)
                job = _job(event, source, event.key, event.value, None)
                if job is not None:
                    await lanes.submit_work(job.envelope["order_id"], job)
            else:  # a tick or retry notice, or an event after offsets Faust skipped
                set_current(event)
                await _on_event(event)
            if turn.due():  # a batch of a thousand events must not hold the loop
                await turn.give()


async def _on_event(event: Delivered) -> None:
    source = _source(event)
    if source.topic == settings.retry_topic:
        await _on_internal(event, source)
        return
    w = worker()
    tp = (source.topic, source.partition)
    items = [(source, event.key, event.value)]
    acked: Any = event
    missing = await w.gaps.missing(tp, source.offset)
    if missing:
        fetched = await w.gaps.fetch(tp, missing)
        log.warning("Faust skipped offsets %d-%d of %s[%d]; %d fetched and processed first",
                    missing.start, missing.stop - 1, source.topic, source.partition, len(fetched))
        items = [(Source(source.topic, source.partition, offset), key, value)
                 for offset, key, value in fetched] + items
        acked = FilledGap(event, app.consumer, missing)
    done = _countdown(len(items), functools.partial(w.acks.done, acked))
    for item_source, key, value in items:
        await _submit(event, item_source, key, value, done)


def _countdown(n: int, then: Callable[[], None]) -> Callable[[], None]:
    """A callback that calls `then` on its n-th call: the event is acked when all its jobs are done."""
    remaining = n

    def one_done() -> None:
        nonlocal remaining
        remaining -= 1
        if remaining == 0:
            then()
    return one_done


async def _submit(event: Delivered, source: Source, key: bytes | None, value: bytes | None,
                  done: Callable[[], None] | None) -> None:
    """`_job`, then to its order's lane."""
    job = _job(event, source, key, value, done)
    if job is not None:
        await worker().lanes.submit_work(job.envelope["order_id"], job)


def _job(event: Delivered, source: Source, key: bytes | None, value: bytes | None,
         done: Callable[[], None] | None) -> EventJob | None:
    """Decode and validate one message: a good one's job for its lane (with `event`, the Kafka
    event it came with, as the context for its table writes); a bad one is a dead letter (None).
    Once handled it is acked: by `done`, or (None) as `event` itself."""
    w = worker()
    try:
        envelope = decode(value or b"", key, lifecycle.event_types)
    except InvalidEvent as exc:
        _refuse(event, value, key, "invalid_event", str(exc), source, "events.invalid")
        _ack(event, done)
        return None
    except Exception as exc:  # a decoder bug: this message must not stop the partition
        log.exception("decoding %s[%d]@%d failed unexpectedly; dead-lettered", *source.as_list())
        _refuse(event, value, key, "processing_error", f"{type(exc).__name__}: {exc}", source)
        _ack(event, done)
        return None
    return EventJob(w.processor, envelope, source, event, w.acks, done)


def _ack(event: Delivered, done: Callable[[], None] | None) -> None:
    if done is None:
        worker().acks.done(event)
    else:
        done()


def _refuse(event: Delivered, value: bytes | None, key: bytes | None, kind: str, message: str,
            source: Source, *counters: str) -> None:
    """A message that is not an event of any order: its letter (by its stable id) and counters,
    unless a redo after a crash finds it refused already."""
    w = worker()
    if w.outbox.refused_before(source.partition, source.offset):
        return
    letter = dead_letter(value or b"", kind, message, 1, source)
    for counter in (*counters, "dead_letters", f"dead_letters.{kind}"):
        w.stats.count(source.partition, counter)
    w.stats.dead_letter(letter)
    w.outbox.refuse(event, source.partition, source.offset, letter, key_of(letter, key))


async def _on_internal(event: Delivered, source: Source) -> None:
    try:
        kind = json.loads(event.value or b"").get("kind")
    except (ValueError, AttributeError):  # not ours (empty, not JSON, not an object): passed over
        kind = None
    w = worker()
    if kind != "tick":
        w.acks.done(event)  # retry notices: the order record holds the retry, the tick fires it
        return
    partition = source.partition
    if _agent_queue:
        refetch_starved(app, _agent_queue[0], (settings.events_topic, settings.retry_topic))
    # Only the entries due now are read (streams/index.py): a tick costs the same at a million
    # orders held as at ten, after an assignment as at any other time.
    generation, in_flight = _due_in_flight.get(partition, (-1, set()))
    if generation != app.consumer_generation_id:
        in_flight = set()
        _due_in_flight[partition] = (app.consumer_generation_id, in_flight)
    ready = [entry for entry in w.index.due(partition, time.time(), DUE_PER_TICK + len(in_flight))
             if entry.key not in in_flight][:DUE_PER_TICK]
    if not ready:
        w.acks.done(event)
        return
    one_done = _countdown(len(ready), functools.partial(w.acks.done, event))
    for entry in ready:
        in_flight.add(entry.key)
        await w.lanes.submit(entry.order_id, event, functools.partial(w.processor.handle_due, entry, source),
                           functools.partial(_due_done, in_flight, entry, one_done))


def _due_done(in_flight: set[str], entry: Due, then: Callable[[], None]) -> None:
    in_flight.discard(entry.key)
    then()


@app.timer(settings.sweep_interval_s)
async def send_ticks() -> None:
    """One tick per owned partition; cheap, and it keeps timed work inside partition context."""
    for tp in app.assignor.assigned_actives():
        if tp.topic == settings.events_topic:
            await retry_topic.send(key=b"tick", value=TICK, partition=tp.partition)


@app.on_worker_init.connect  # type: ignore[arg-type]
def _start_worker(app: faust.App, **_: Any) -> None:
    """Build the worker's objects (streams/worker.py), then its watches: a worker stuck out of its
    group stops (streams/engine/supervision.py), long loop stalls are logged, collections paced."""
    w = build()
    # stuck, it has nothing in flight to finish, and its stop may hang too: a short bound
    watch_for_stuck(app, settings.stuck_after_s, lambda: crash(
        RuntimeError(f"in a rebalance or recovery for over {settings.stuck_after_s:g}s"),
        hard_exit_after_s=HARD_EXIT_GRACE_S), describe=lambda: describe_waits(app))
    watch_stalls(app.loop, settings.stall_report_ms / 1000, observe_lag=w.metrics.observe_loop_lag)
    w.collector.start(app.loop)


@app.on_partitions_revoked.connect  # type: ignore[arg-type]
async def _forget_revoked(app: faust.App, revoked: set[Any], **_: Any) -> None:
    # Faust has flushed its producer; our changelog records must be delivered too before the new
    # owner recovers these partitions (one landing after its records would win the compaction)
    w = worker()
    await w.changelog.flush()
    w.gaps.reset()
    w.index.forget()
    partitions = [tp.partition for tp in revoked if tp.topic == settings.events_topic]
    for partition in partitions:
        _due_in_flight.pop(partition, None)
    w.forget(partitions)


@app.task
async def _flush_then_ack() -> None:
    try:
        await worker().acks.run()
    except Exception as exc:  # a flush that failed (Kafka refused a record): nothing of it was acked
        log.error("flushing to Kafka failed; stopping the worker (its events are redone): %s", exc)
        crash(exc)


@app.task
async def _announce() -> None:
    # Faust leaves the root logger at DEBUG for its startup spinner: back to what the user asked
    # for (streams/engine/logs.py). aiokafka and Faust's topics log every message sent at DEBUG:
    # even at `-l debug` those stay off (building their records cost about 5% of a worker's CPU).
    settle_root_level()
    for name in ("aiokafka", "faust.topics"):
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.getEffectiveLevel(), logging.INFO))
    log.info("orderflow processor started: %d lanes, lifecycle with %d transitions, %s event loop, "
             "core %s", worker().lanes.size, len(lifecycle.transitions),
             type(asyncio.get_running_loop()).__module__, compiled.status)


@app.service
class ProcessorShutdown(faust.Service):
    """Stops the lanes and closes the shared HTTP session when the worker stops."""

    async def on_stop(self) -> None:
        w = built()
        if w is not None:
            await w.lanes.stop()
            await w.effects.close()
