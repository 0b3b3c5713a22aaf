"""The order processor agent and its tick timer.

One agent reads `orders.events` and `orders.retry` (co-partitioned) without auto-acks. Each valid
event goes to its order's lane; a bad one goes straight to the dead letters. The retry topic carries
retry notices and *ticks*: every worker's timer sends a tick into each partition it owns, and the
tick, consumed like any event of that partition, fires due retries and park timeouts inside that
partition's stream context, so their table writes land in the right changelog partition and a
worker that takes the partition over carries on with them.
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
import orjson

from schemas.envelope import decode
from streams.acks import FlushThenAck
from streams.app import (
    app,
    closed_table,
    dlq_topic,
    inbox,
    index_table,
    inputs,
    lifecycle,
    orders_table,
    retry_topic,
    settings,
    stats_table,
)
from streams.closed import ClosedOrders
from streams.collector import PacedCollector
from streams.deadletters import Source, dead_letter, encode, key_of
from streams.effects import Effects
from streams.engine.changelog import ChangelogWriter
from streams.engine.context import current_event, detached, install_writer, set_current, write_in_context
from streams.engine.delivery import Delivered
from streams.engine.flow import refetch_starved
from streams.engine.gaps import (
    FilledGap,
    GapGuard,
    refuse_acks_of_skipped,
    seek_uncommitted_to_beginning,
)
from streams.engine.stalls import LoopTurn, watch_stalls
from streams.engine.supervision import HARD_EXIT_GRACE_S, is_ready, stop_worker, watch_for_stuck
from streams.engine.tables import BufferedTable, drive_paced
from streams.engine.transport import committed_offset
from streams.errors import InvalidEvent
from streams.feed import ChangeFeed
from streams.index import Due, OrderIndex
from streams.kafka_clients import client_config
from streams.lanes import Lanes
from streams.machine import Limits, Retry
from streams.metrics import OVERDUE_S, Metrics, partition_lag
from streams.outbox import Outbox
from streams.processor import Policy, Processor
from streams.retry import Backoff
from streams.state import OrderStore
from streams.stats import PartitionStats

log = logging.getLogger(__name__)

TICK = b'{"kind":"tick"}'
DUE_PER_TICK = 500  # due orders one tick hands to the lanes, per partition (the rest: next tick)


async def _send_dead_letter(letter: dict[str, Any]) -> None:
    """Held in the outbox until the flush that writes the order remembering it (streams/outbox.py)."""
    outbox.add(current_event(), letter, key_of(letter, None))


def _produce_letter(letter: dict[str, Any], key: bytes | None) -> None:
    dlq_topic.send_soon(key=key, value=encode(letter))


def _send_change(record: dict[str, Any]) -> None:
    """Held until the flush that acks its event: a crash can repeat a change, never lose one."""
    changes.add(current_event(), record, record["client_id"].encode())


def _produce_change(record: dict[str, Any], key: bytes | None) -> None:
    if feed is not None:
        feed.send(key or b"", orjson.dumps(record))  # compact JSON, several times faster than json


# the change feed's own producer (streams/feed.py); ORDERFLOW_CHANGES_TOPIC="" turns the feed off
feed = ChangeFeed(client_config(settings), settings.changes_topic) if settings.changes_topic else None


# the tables' changelog records go through librdkafka (streams/engine/changelog.py)
changelog = ChangelogWriter(app, client_config(settings))
install_writer(changelog)


async def _flush_all() -> None:
    """Faust's producer (dead letters, retry notices), then the changelogs' and the change feed's
    at once (each waits in a thread of its own)."""
    await app.producer.flush()
    await asyncio.gather(changelog.flush(), *([feed.flush()] if feed is not None else []))


async def _send_retry_notice(retry: Retry, partition: int) -> None:
    notice = {"kind": "retry", **retry}
    await retry_topic.send(key=retry["event"]["client_id"].encode(),
                           value=json.dumps(notice).encode(), partition=partition)


agent_state = app.agent_state


def _crash(exc: BaseException, hard_exit_after_s: float | None = None) -> None:
    """Something a message cannot explain failed (Kafka itself, most likely): stop the worker."""
    agent_state.running = False
    agent_state.failure = exc
    stop_worker(app, exc, hard_exit_after_s)


def _current(event: Any) -> bool:
    """False for an event fetched before the last rebalance: Faust redelivers it from the committed
    offset, so the old copy must neither be processed, nor written, nor acked (as Faust's own
    stream skips it)."""
    return bool(event.message.generation_id == app.consumer_generation_id)


def lag() -> dict[tuple[str, int], int]:
    """Per owned input partition: the high watermark minus the committed offset."""
    consumer = app.consumer
    inputs = [tp for tp in app.assignor.assigned_actives()
              if tp.topic in (settings.events_topic, settings.retry_topic)]
    return partition_lag(inputs, consumer.highwater, lambda tp: committed_offset(consumer, tp))


store = OrderStore(orders_table, settings.events_topic, settings.order_cache, _current)
index_entries = BufferedTable(index_table, _current)
index = OrderIndex(index_entries, known_size=settings.order_cache)
stats = PartitionStats(load=lambda partition: stats_table.get(str(partition)))
closed = ClosedOrders(closed_table, _current)
lanes = Lanes(settings.lanes, on_error=_crash, is_current=_current,
              turn_budget_s=settings.lane_turn_ms / 1000)


def _overdue() -> int:
    """Timed work of this worker's partitions due more than OVERDUE_S ago (up to 1,000 each)."""
    before = time.time() - OVERDUE_S
    return sum(len(index.due(p, before, 1000)) for p in store.active_partitions())


metrics = Metrics(stats, lanes.depth, lag, ready=lambda: is_ready(app), overdue=_overdue)
effects = Effects(settings.effects_url, settings.effect_timeout_s)
collector = PacedCollector(settings.gc_pace_ms / 1000, ready=lambda: is_ready(app))
processor = Processor(
    store=store, lifecycle=lifecycle,
    policy=Policy(
        limits=Limits(history=settings.history_limit, parked=settings.park_limit),
        park_timeout_s=settings.park_timeout_s, retention_s=settings.idempotency_retention_s,
        release_parked_on_failure=settings.on_terminal_failure == "release",
        finished_retention_s=settings.finished_retention_s,
    ),
    closed=closed,
    effects=effects,
    backoff=Backoff(settings.retry_base_s, settings.retry_cap_s, settings.retry_max_attempts),
    index=index, send_dead_letter=_send_dead_letter, send_retry_notice=_send_retry_notice,
    stats=stats, observe_latency=metrics.observe_latency,
    send_change=_send_change if settings.changes_topic else lambda _record: None,
)
outbox = Outbox(_produce_letter, stats_table, _current)
changes = Outbox(_produce_change, None, _current)  # the change feed, sent like the letters


async def _before_flush(batch: list[Any]) -> bool:
    """Letters first, then the records that remember them, in the same flush (streams/outbox.py);
    then the counters of the partitions whose events this flush acks (streams/stats.py).
    Everything to write is taken now, in one step (so a letter and the record remembering it
    leave in the same flush), then written a slice at a time, the event loop turning in between."""
    letters, feed, orders = outbox.send_steps(), changes.send_steps(), store.write_steps()
    entries, markers = index_entries.write_steps(), closed.write_steps()
    sent = await drive_paced(letters)
    await drive_paced(feed)
    written = await drive_paced(orders)
    entries_written = await drive_paced(entries)
    markers_written = await drive_paced(markers)
    _write_counters(batch)
    return sent and written and entries_written and markers_written


def _write_counters(batch: list[Any]) -> None:
    """Each changed partition's counters, in the changelog partition of one of its events here."""
    contexts = {event.message.partition: event for event in batch if _current(event)}
    with detached():
        for partition in [p for p in stats.dirty if p in contexts]:
            record = stats.persisted(partition)
            if not write_in_context(stats_table, str(partition), contexts[partition], record):
                stats.dirty.add(partition)  # changelog metadata not known yet: the next flush


acks = FlushThenAck(_flush_all, before_flush=_before_flush, is_current=_current,
                    after_flush=lambda: stats.flushed())
# per partition: the due entries handed to the lanes, in this consumer generation (a job from an
# older one is skipped by its lane, without calling its done callback)
_due_in_flight: dict[int, tuple[int, set[str]]] = {}
_agent_queue: list[Any] = []  # the agent's channel queue, once it runs
gaps = GapGuard(client_config(settings), settings.app_id)


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
        _crash(exc)
        raise
    finally:
        agent_state.running = False


async def _process(stream: Any) -> None:
    inputs = {settings.events_topic, settings.retry_topic}
    refuse_acks_of_skipped(app.consumer, inputs)
    seek_uncommitted_to_beginning(app.consumer, inputs)
    _agent_queue.append(stream.channel.queue)
    turn = LoopTurn()
    # the inputs' messages come from the fetch in lists, not through the stream (engine/delivery.py)
    async for batch in inbox.batches():
        for event in batch:
            if _current(event):  # else fetched before a rebalance (during this batch): redelivered
                set_current(event)  # the partition of its table writes
                await _on_event(event)
                await turn.share()  # a batch of a thousand events must not hold the loop


async def _on_event(event: Delivered) -> None:
    source = _source(event)
    if source.topic == settings.retry_topic:
        await _on_internal(event, source)
        return
    items = [(source, event.key, event.value)]
    acked: Any = event
    missing = await gaps.missing((source.topic, source.partition), source.offset)
    if missing:
        fetched = await gaps.fetch((source.topic, source.partition), missing)
        log.warning("Faust skipped offsets %d-%d of %s[%d]; %d fetched and processed first",
                    missing.start, missing.stop - 1, source.topic, source.partition, len(fetched))
        items = [(Source(source.topic, source.partition, offset), key, value)
                 for offset, key, value in fetched] + items
        acked = FilledGap(event, app.consumer, missing)
    done = _countdown(len(items), functools.partial(acks.done, acked))
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
                  done: Callable[[], None]) -> None:
    """Decode and validate one message; a bad one is a dead letter, a good one goes to its lane
    (with `event`, the Kafka event it came with, as the context for its table writes)."""
    try:
        envelope = decode(value or b"", key, lifecycle.event_types)
    except InvalidEvent as exc:
        _refuse(event, value, key, "invalid_event", str(exc), source, "events.invalid")
        done()
        return
    except Exception as exc:  # a decoder bug: this message must not stop the partition
        log.exception("decoding %s[%d]@%d failed unexpectedly; dead-lettered", *source.as_list())
        _refuse(event, value, key, "processing_error", f"{type(exc).__name__}: {exc}", source)
        done()
        return
    await lanes.submit(envelope["order_id"], event,
                       functools.partial(processor.handle_event, envelope, source), done)


def _refuse(event: Delivered, value: bytes | None, key: bytes | None, kind: str, message: str,
            source: Source, *counters: str) -> None:
    """A message that is not an event of any order: its letter (by its stable id) and counters,
    unless a redo after a crash finds it refused already."""
    if outbox.refused_before(source.partition, source.offset):
        return
    letter = dead_letter(value or b"", kind, message, 1, source)
    for counter in (*counters, "dead_letters", f"dead_letters.{kind}"):
        stats.count(source.partition, counter)
    stats.dead_letter(letter)
    outbox.refuse(event, source.partition, source.offset, letter, key_of(letter, key))


async def _on_internal(event: Delivered, source: Source) -> None:
    try:
        kind = json.loads(event.value or b"").get("kind")
    except (ValueError, AttributeError):  # not ours (empty, not JSON, not an object): passed over
        kind = None
    if kind != "tick":
        acks.done(event)  # retry notices: the order record holds the retry, the tick fires it
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
    ready = [entry for entry in index.due(partition, time.time(), DUE_PER_TICK + len(in_flight))
             if entry.key not in in_flight][:DUE_PER_TICK]
    if not ready:
        acks.done(event)
        return
    one_done = _countdown(len(ready), functools.partial(acks.done, event))
    for entry in ready:
        in_flight.add(entry.key)
        await lanes.submit(entry.order_id, event, functools.partial(processor.handle_due, entry, source),
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
def _watch_for_stuck(app: faust.App, **_: Any) -> None:
    """Stop a worker stuck out of its group (see streams/engine/supervision.py, StuckWatch)."""
    # stuck, it has nothing in flight to finish, and its stop may hang too: a short bound
    watch_for_stuck(app, settings.stuck_after_s, lambda: _crash(
        RuntimeError(f"in a rebalance or recovery for over {settings.stuck_after_s:g}s"),
        hard_exit_after_s=HARD_EXIT_GRACE_S))
    watch_stalls(app.loop, settings.stall_report_ms / 1000, observe_lag=metrics.observe_loop_lag)
    collector.start(app.loop)


@app.on_partitions_revoked.connect  # type: ignore[arg-type]
async def _forget_revoked(app: faust.App, revoked: set[Any], **_: Any) -> None:
    # Faust has flushed its producer; our changelog records must be delivered too before the new
    # owner recovers these partitions (one landing after its records would win the compaction)
    await changelog.flush()
    gaps.reset()
    index.forget()
    for tp in revoked:
        if tp.topic == settings.events_topic:
            _due_in_flight.pop(tp.partition, None)
            stats.forget(tp.partition)
            store.forget([tp.partition])
            index_entries.forget([tp.partition])
            outbox.forget([tp.partition])
            changes.forget([tp.partition])
            closed.forget([tp.partition])


@app.task
async def _flush_then_ack() -> None:
    try:
        await acks.run()
    except Exception as exc:  # a flush that failed (Kafka refused a record): nothing of it was acked
        log.error("flushing to Kafka failed; stopping the worker (its events are redone): %s", exc)
        _crash(exc)


@app.task
async def _announce() -> None:
    # aiokafka and Faust's topics log every message sent at DEBUG; even when no handler shows them,
    # building those records cost about 5% of a worker's CPU in our profile.
    for name in ("aiokafka", "faust.topics"):
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.getEffectiveLevel(), logging.INFO))
    log.info("orderflow processor started: %d lanes, lifecycle with %d transitions, %s event loop",
             lanes.size, len(lifecycle.transitions), type(asyncio.get_running_loop()).__module__)


@app.service
class ProcessorShutdown(faust.Service):
    """Stops the lanes and closes the shared HTTP session when the worker stops."""

    async def on_stop(self) -> None:
        await lanes.stop()
        await effects.close()
