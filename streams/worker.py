"""The worker's objects, built in one place and in order when a worker starts, never at import.

`build()` makes them once, from `on_worker_init` (agents/orders.py), before the worker starts its
services: the producers of the changelogs and the change feed, the order store and its index, the
lanes, the processor and the ack loop. Importing a module of the app builds nothing (no producer
connects, no thread starts), and the agent, the timers and the views reach the objects through
`worker()`. Each callback the processor and the ack loop are given is a method here, so the way
an event's results leave (dead letters, change feed, retry notices, counters) reads in one place.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import orjson

from streams.acks import FlushThenAck
from streams.app import (
    app,
    closed_table,
    index_table,
    lifecycle,
    orders_table,
    retry_topic,
    settings,
    stats_table,
)
from streams.closed import ClosedOrders
from streams.collector import PacedCollector
from streams.core.deadletters import DeadLetter, encode, key_of
from streams.core.machine import ChangeRecord, Limits, Retry
from streams.core.retry import Backoff
from streams.core.stats import PartitionStats
from streams.effects import Effects
from streams.engine.changelog import ChangelogWriter
from streams.engine.context import current_event, detached, install_writer, write_in_context
from streams.engine.delivery import Delivered, ack_all
from streams.engine.gaps import GapGuard
from streams.engine.supervision import is_ready, stop_worker
from streams.engine.tables import BufferedTable, drive_paced
from streams.engine.transport import committed_offset
from streams.feed import ChangeFeed
from streams.index import OrderIndex
from streams.kafka_clients import client_config
from streams.lanes import Lanes
from streams.outbox import Outbox
from streams.processor import Policy, Processor
from streams.state import OrderStore
from streams.web.metrics import OVERDUE_S, Metrics, partition_lag

agent_state = app.agent_state


def is_current(event: Any) -> bool:
    """False for an event fetched before the last rebalance: Faust redelivers it from the committed
    offset, so the old copy must neither be processed, nor written, nor acked (as Faust's own
    stream skips it)."""
    message = event if type(event) is Delivered else event.message  # called ~10 times an event
    return bool(message.generation_id == app.consumer_generation_id)


def crash(exc: BaseException, hard_exit_after_s: float | None = None) -> None:
    """Something a message cannot explain failed (Kafka itself, most likely): stop the worker."""
    agent_state.running = False
    agent_state.failure = exc
    stop_worker(app, exc, hard_exit_after_s)


def lanes_for(calls: int) -> int:
    """Lanes for `calls` effect calls out at once (ORDERFLOW_LANES): twice as many, so an order
    waits readied behind each call; one stays one (strictly sequential)."""
    return 1 if calls <= 1 else 2 * calls


class OrderWorker:
    """Everything a worker holds besides Faust's own: built in the order each part needs the
    ones before it."""

    def __init__(self) -> None:
        config = client_config(settings)
        # the tables' changelog records go through librdkafka (streams/engine/changelog.py)
        self.changelog = ChangelogWriter(app, config)
        install_writer(self.changelog)
        # the change feed's own producer (streams/feed.py); ORDERFLOW_CHANGES_TOPIC="" turns it off
        self.feed = ChangeFeed(config, settings.changes_topic) if settings.changes_topic else None
        self.store = OrderStore(orders_table, settings.events_topic, settings.order_cache, is_current)
        self.index_entries = BufferedTable(index_table, is_current)
        self.index = OrderIndex(self.index_entries, known_size=settings.order_cache)
        self.stats = PartitionStats(load=lambda partition: stats_table.get(str(partition)))
        self.closed = ClosedOrders(closed_table, is_current)
        self.effects = Effects(settings.effects_url, settings.effect_timeout_s,
                               max_connections=settings.lanes)
        # ORDERFLOW_LANES effect calls out at once (the client's connections) and twice as many
        # orders worked on: while an order waits for its answer, another is readied up to its own
        # call, which goes out on the first connection an answer frees (streams/httpclient.py);
        # the lanes have the answers that came read between their jobs (streams/lanes.py)
        self.lanes = Lanes(lanes_for(settings.lanes), on_error=crash, is_current=is_current,
                           turn_budget_s=settings.lane_turn_ms / 1000,
                           read_answers=self.effects.read_answers)
        self.metrics = Metrics(self.stats, self.lanes.depth, self.lag, ready=lambda: is_ready(app),
                               overdue=self._overdue, lanes_busy=self.lanes.busy)
        self.collector = PacedCollector(settings.gc_pace_ms / 1000, ready=lambda: is_ready(app))
        self.outbox = Outbox(self._produce_letter, stats_table, is_current)
        self.changes = Outbox(self._produce_change, None, is_current)  # sent like the letters
        self.processor = Processor(
            store=self.store, lifecycle=lifecycle,
            policy=Policy(
                limits=Limits(history=settings.history_limit, parked=settings.park_limit),
                park_timeout_s=settings.park_timeout_s, retention_s=settings.idempotency_retention_s,
                release_parked_on_failure=settings.on_terminal_failure == "release",
                finished_retention_s=settings.finished_retention_s,
            ),
            closed=self.closed,
            effects=self.effects,
            backoff=Backoff(settings.retry_base_s, settings.retry_cap_s, settings.retry_max_attempts),
            index=self.index, send_dead_letter=self.send_dead_letter,
            send_retry_notice=self.send_retry_notice,
            stats=self.stats, observe_latency=self.metrics.latency.observe,
            send_change=self._send_change if settings.changes_topic else lambda _record: None,
        )
        self.acks = FlushThenAck(self._flush_all, before_flush=self._before_flush,
                                 is_current=is_current, after_flush=lambda: self.stats.flushed(),
                                 ack=lambda events: ack_all(app.consumer, events))
        self.gaps = GapGuard(config, settings.app_id)

    def lag(self) -> dict[tuple[str, int], int]:
        """Per owned input partition: the high watermark minus the committed offset."""
        consumer = app.consumer
        inputs = [tp for tp in app.assignor.assigned_actives()
                  if tp.topic in (settings.events_topic, settings.retry_topic)]
        return partition_lag(inputs, consumer.highwater, lambda tp: committed_offset(consumer, tp))

    def _overdue(self) -> int:
        """Timed work of this worker's partitions due more than OVERDUE_S ago (up to 1,000 each)."""
        before = time.time() - OVERDUE_S
        return sum(len(self.index.due(p, before, 1000)) for p in self.store.active_partitions())

    async def send_dead_letter(self, letter: DeadLetter) -> None:
        """Held in the outbox until the flush that writes the order remembering it (streams/outbox.py)."""
        self.outbox.add(current_event(), letter, key_of(letter, None))

    def _produce_letter(self, letter: DeadLetter, key: bytes | None) -> None:
        """With the changelog records, through their producer (streams/engine/changelog.py)."""
        self.changelog.produce(settings.dlq_topic, key, encode(letter))

    def _send_change(self, record: ChangeRecord) -> None:
        """Held until the flush that acks its event: a crash can repeat a change, never lose one.
        Held encoded (compact JSON by orjson, several times faster than json): bytes are no work
        for the garbage collector, where the record's dicts, one set per event in flight until the
        flush, were walked by every young collection."""
        self.changes.add(current_event(), orjson.dumps(record), record["client_id"].encode())

    def _produce_change(self, value: bytes, key: bytes | None) -> None:
        if self.feed is not None:
            self.feed.send(key or b"", value)

    @staticmethod
    async def send_retry_notice(retry: Retry, partition: int) -> None:
        notice = {"kind": "retry", **retry}
        await retry_topic.send(key=retry["event"]["client_id"].encode(),
                               value=json.dumps(notice).encode(), partition=partition)

    async def _flush_all(self) -> None:
        """Faust's producer (dead letters, retry notices), then the changelogs' and the change
        feed's at once (each waits in a thread of its own)."""
        await app.producer.flush()
        await asyncio.gather(self.changelog.flush(),
                             *([self.feed.flush()] if self.feed is not None else []))

    async def _before_flush(self, batch: list[Any]) -> bool:
        """Letters first, then the records that remember them, in the same flush (streams/outbox.py);
        then the counters of the partitions whose events this flush acks (streams/core/stats.py).
        Everything to write is taken now, in one step (so a letter and the record remembering it
        leave in the same flush), then written a slice at a time, the event loop turning in between."""
        letters, feed, orders = self.outbox.send_steps(), self.changes.send_steps(), self.store.write_steps()
        entries, markers = self.index_entries.write_steps(), self.closed.write_steps()
        sent = await drive_paced(letters)
        await drive_paced(feed)
        written = await drive_paced(orders)
        entries_written = await drive_paced(entries)
        markers_written = await drive_paced(markers)
        self._write_counters(batch)
        return sent and written and entries_written and markers_written

    def _write_counters(self, batch: list[Any]) -> None:
        """Each changed partition's counters, in the changelog partition of one of its events here."""
        contexts = {event.message.partition: event for event in batch if is_current(event)}
        with detached():
            for partition in [p for p in self.stats.dirty if p in contexts]:
                record = self.stats.persisted(partition)
                if not write_in_context(stats_table, str(partition), contexts[partition], record):
                    self.stats.dirty.add(partition)  # changelog metadata not known yet: the next flush

    def forget(self, partitions: list[int]) -> None:
        """Partitions revoked: what this worker held of them goes (their new owner recovers them)."""
        for partition in partitions:
            self.stats.forget(partition)
        self.store.forget(partitions)
        self.index_entries.forget(partitions)
        self.outbox.forget(partitions)
        self.changes.forget(partitions)
        self.closed.forget(partitions)


_built: list[OrderWorker] = []


def build() -> OrderWorker:
    """The worker's objects, made on the first call (the worker's `on_worker_init`)."""
    if not _built:
        _built.append(OrderWorker())
    return _built[0]


def worker() -> OrderWorker:
    """The objects `build()` made; a RuntimeError before (nothing of a worker runs then)."""
    if not _built:
        raise RuntimeError("the worker's objects are built when a worker starts (streams.worker.build)")
    return _built[0]


def built() -> OrderWorker | None:
    """The objects if a worker built them (for a stop that may come before)."""
    return _built[0] if _built else None
