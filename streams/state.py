"""The order table: one Faust Table (RocksDB via rocksdict, changelogged) keyed by order_id,
behind a write-back cache.

The table's key (order_id) is not the partition key (client_id), and outside producers may use any
partitioner, so nothing here computes a partition from a key: writes go to the partition of the
event that changed the order (Faust's current-event context), and reads for views look in the
partitions this worker actively owns (Faust's store internals: streams/engine/tables.py). The
orders' due times and client entries are kept by streams/index.py.

Write-back, as Quix Streams does per checkpoint: `put` only updates the cache and marks the order
dirty; `write_dirty` (called by the ack loop just before its producer flush) writes each dirty order
once, so an order changed by five events of one batch costs one RocksDB write and one changelog
record, not five. This is safe because no event is acked before that flush: a crash before it
loses only changes whose events are redone.

The cache keeps each order as its JSON bytes, not as the decoded dict: a decoded order is a dict and
two lists the garbage collector tracks, and a young collection walks every one cached since the
last, 80,000 objects and 30-130 ms for 20,000 orders, while `/health` waits (bench/RESULTS.md,
2026-12-02). Bytes are not tracked; decoding one costs a few microseconds at a hit, and a `get` of a
cached order hands out a fresh dict, so no reader can change it by mistake.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, cast

import orjson

from streams.core.machine import Order
from streams.engine.changelog import table_json
from streams.engine.context import current_event, write_changes
from streams.engine.tables import SLICE, WriteSteps, active_value, drive, value_in_partition


class OrderStore:
    """Typed, cached access to the order table."""

    def __init__(self, table: Any, source_topic: str, cache_size: int = 20_000,
                 is_current: Callable[[Any], bool] = lambda _event: True) -> None:
        self.table = table
        self.source_topic = source_topic
        self.cache_size = cache_size
        # order_id -> (partition, the order's JSON): bytes, which the garbage collector never walks
        self._cache: OrderedDict[str, tuple[int, bytes]] = OrderedDict()
        # order_id -> (event that changed it, the order, or None: remove it, a changelog tombstone)
        self._dirty: dict[str, tuple[Any, Order | None]] = {}
        self._writing: dict[str, tuple[Any, Order | None]] = {}  # being written now
        self._is_current = is_current  # False for an event fetched before the last rebalance

    def get(self, order_id: str) -> Order | None:
        """The order, read while processing an event of its partition (records are never mutated)."""
        cached = self._cached(order_id)
        if cached is not None:
            if order_id in self._cache:
                self._cache.move_to_end(order_id)
            return cached[1]
        event = current_event()
        value = (value_in_partition(self.table, order_id, event.message.partition) if event is not None
                 else self.table.get(order_id))
        if value is None:
            return None
        order = cast(Order, dict(value))  # a record the store decoded from its JSON
        if event is not None and self._is_current(event):
            self._remember(order_id, event.message.partition, table_json(order))
        return order

    def put(self, order: Order) -> None:
        """Keep the order, to be written with the next flush in the current event's partition."""
        event = current_event()
        if event is None:  # no Kafka event (unit tests with the in-memory table): write through
            self.table[order["order_id"]] = order
            return
        if not self._is_current(event):
            # A job that began before a rebalance and ended after it: its change is redone from
            # the committed offset. Keeping it (even in the cache) let the redo start from it: a
            # chaos run lost a dead letter that way (the stale order said it was sent).
            return
        self._dirty[order["order_id"]] = (event, order)
        self._cache.pop(order["order_id"], None)  # cached again once written (encoded once there)

    def remove(self, order: Order) -> None:
        """Remove a finished order with the next flush: a tombstone on the changelog, so compaction
        reclaims it."""
        order_id = order["order_id"]
        event = current_event()
        if event is None:  # no Kafka event (unit tests with the in-memory table): at once
            self.table.pop(order_id, None)
            return
        if not self._is_current(event):  # from before a rebalance: redone (see `put`)
            return
        self._dirty[order_id] = (event, None)
        self._cache.pop(order_id, None)

    def write_dirty(self) -> bool:
        return drive(self.write_steps())

    def write_steps(self) -> WriteSteps:
        """Write every changed order once, each in its own event's changelog partition, a slice at
        a time (see `streams.engine.tables.drive_paced`); the orders being written stay readable.

        False when some could not be written yet (Faust does not know the changelog topic's
        partitions right after creating it): those stay dirty, and their events must not be acked."""
        dirty, self._dirty = self._dirty, {}  # taken now, when called, not when first driven
        self._writing = dirty
        return self._write(dirty)

    def _write(self, dirty: dict[str, tuple[Any, Order | None]]) -> WriteSteps:
        failed = False
        items = list(dirty.items())
        try:
            for start in range(0, len(items), SLICE):
                changes: list[tuple[str, Any, Order | None, bytes | None]] = []
                for order_id, (event, order) in items[start:start + SLICE]:
                    if not self._is_current(event):
                        self._cache.pop(order_id, None)  # a change from before a rebalance: redone
                        continue
                    # encoded once, for the table and the cache
                    changes.append((order_id, event, order, table_json(order) if order is not None else None))
                for (order_id, event, order, encoded), done in zip(
                        changes, write_changes(self.table, changes), strict=True):
                    if not done:
                        failed = True
                        self._dirty.setdefault(order_id, (event, order))  # unless changed since
                    elif encoded is not None:
                        self._remember(order_id, event.message.partition, encoded)
                if start + SLICE < len(items):
                    yield
        finally:
            self._writing = {}
        return not failed

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions this worker lost: drop their cached and unwritten orders (their unacked events
        are redone by the new owner; writing them now would put stale records in its changelog)."""
        lost = set(partitions)
        self._dirty = {k: v for k, v in self._dirty.items() if v[0].message.partition not in lost}
        for order_id in [k for k, (p, _) in self._cache.items() if p in lost]:
            del self._cache[order_id]

    def _remember(self, order_id: str, partition: int, encoded: bytes) -> None:
        self._cache[order_id] = (partition, encoded)
        self._cache.move_to_end(order_id)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)  # a dirty one stays in _dirty until written

    def _store(self) -> Any:
        return self.table.data

    def active_partitions(self) -> list[int]:
        """Partitions of the source topic this worker actively owns (standbys excluded)."""
        return sorted(tp.partition for tp in self.table.app.assignor.assigned_actives()
                      if tp.topic == self.source_topic)

    def get_active(self, order_id: str) -> Order | None:
        """The order if one of this worker's active partitions holds it (never a standby copy)."""
        partitions = self.active_partitions()
        cached = self._cached(order_id)
        if cached is not None and cached[0] in partitions:
            return cached[1]
        value = active_value(self.table, order_id, partitions)
        return None if value is None else cast(Order, dict(value))

    def _cached(self, order_id: str) -> tuple[int, Order | None] | None:
        """(partition, order) when the order is cached or changed; the order None when removed."""
        dirty = self._dirty.get(order_id) or self._writing.get(order_id)
        if dirty is not None:
            return dirty[0].message.partition, dirty[1]
        cached = self._cache.get(order_id)
        if cached is None:
            return None
        return cached[0], orjson.loads(cached[1])
