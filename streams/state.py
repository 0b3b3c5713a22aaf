"""The order table: one Faust Table (RocksDB via rocksdict, changelogged) keyed by order_id,
behind a write-back cache.

The table's key (order_id) is not the partition key (client_id), and outside producers may use any
partitioner, so nothing here computes a partition from a key: writes go to the partition of the
event that changed the order (Faust's current-event context), and reads for views look in the
partitions this worker actively owns (Faust's RocksDB store internals; they live here only).

Write-back, as Quix Streams does per checkpoint: `put` only updates the cache and marks the order
dirty; `write_dirty` (called by the ack loop just before its producer flush) writes each dirty order
once, so an order changed by five events of one batch costs one RocksDB write and one changelog
record, not five. This is safe because no event is acked before that flush: a crash before it
loses only changes whose events are redone.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from faust.streams import current_event

from streams.engine.context import delete_in_context, detached, write_in_context
from streams.machine import Order

log = logging.getLogger(__name__)


class OrderStore:
    """Typed, cached access to the order table."""

    def __init__(self, table: Any, source_topic: str, clients: Any = None,
                 cache_size: int = 20_000,
                 is_current: Callable[[Any], bool] = lambda _event: True) -> None:
        self.table = table
        self.source_topic = source_topic
        self.clients = clients  # client_id -> [order_id, ...]: the index behind /clients/{id}/orders
        self.cache_size = cache_size
        self._cache: OrderedDict[str, tuple[int, Order]] = OrderedDict()  # order_id -> (partition, order)
        # order_id -> (event that changed it, the order, or None: remove it, a changelog tombstone)
        self._dirty: dict[str, tuple[Any, Order | None]] = {}
        self._is_current = is_current  # False for an event fetched before the last rebalance
        self._dirty_clients: dict[str, tuple[Any, list[str]]] = {}  # client_id -> (event, order ids)
        self._indexed: set[str] = set()  # cached orders known to be in their client's index

    def get(self, order_id: str) -> Order | None:
        """The order, read while processing an event of its partition (records are never mutated)."""
        cached = self._cached(order_id)
        if cached is not None:
            if order_id in self._cache:
                self._cache.move_to_end(order_id)
            return cached[1]
        value = self.table.get(order_id)
        if value is None:
            return None
        order = dict(value)
        event = current_event()
        if event is not None and self._is_current(event):
            self._remember(order_id, event.message.partition, order)
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
        self._remember(order["order_id"], event.message.partition, order)

    def remove(self, order: Order) -> None:
        """Remove a finished order and its client-index entry, with the next flush: a tombstone on
        the changelog, so compaction reclaims it."""
        order_id, client_id = order["order_id"], order["client_id"]
        event = current_event()
        if event is None:  # no Kafka event (unit tests with the in-memory table): at once
            self.table.pop(order_id, None)
            return
        if not self._is_current(event):  # from before a rebalance: redone (see `put`)
            return
        self._dirty[order_id] = (event, None)
        self._cache.pop(order_id, None)
        self._indexed.discard(order_id)
        if self.clients is not None:
            pending = self._dirty_clients.get(client_id)
            ids = list(pending[1] if pending is not None else self.clients.get(client_id) or [])
            if order_id in ids:
                self._dirty_clients[client_id] = (event, [i for i in ids if i != order_id])

    def write_dirty(self) -> bool:
        """Write every changed order once, each in its own event's changelog partition.

        False when some could not be written yet (Faust does not know the changelog topic's
        partitions right after creating it): those stay dirty, and their events must not be acked."""
        dirty, self._dirty = self._dirty, {}
        clients, self._dirty_clients = self._dirty_clients, {}
        with detached():
            for order_id, (event, order) in dirty.items():
                if not self._is_current(event):
                    self._cache.pop(order_id, None)  # a change from before a rebalance: redone
                    self._indexed.discard(order_id)
                elif not (write_in_context(self.table, order_id, event, order) if order is not None
                          else delete_in_context(self.table, order_id, event)):
                    self._dirty.setdefault(order_id, (event, order))  # unless changed since
            for client_id, (event, ids) in clients.items():
                if not self._is_current(event):  # dropped: its orders are checked again on redo
                    self._indexed.difference_update(ids)
                elif not write_in_context(self.clients, client_id, event, ids):
                    self._dirty_clients.setdefault(client_id, (event, ids))
        return not self._dirty and not self._dirty_clients

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions this worker lost: drop their cached and unwritten orders (their unacked events
        are redone by the new owner; writing them now would put stale records in its changelog)."""
        lost = set(partitions)
        self._dirty = {k: v for k, v in self._dirty.items() if v[0].message.partition not in lost}
        self._dirty_clients = {k: v for k, v in self._dirty_clients.items()
                               if v[0].message.partition not in lost}
        for order_id in [k for k, (p, _) in self._cache.items() if p in lost]:
            del self._cache[order_id]
            self._indexed.discard(order_id)

    def _remember(self, order_id: str, partition: int, order: Order) -> None:
        self._cache[order_id] = (partition, order)
        self._cache.move_to_end(order_id)
        while len(self._cache) > self.cache_size:
            evicted, _ = self._cache.popitem(last=False)  # a dirty one stays in _dirty until written
            self._indexed.discard(evicted)

    def add_to_client(self, order: Order) -> None:
        """Make sure the order is in its client's index (same partition as the order: the event's),
        written with the changed orders, before the flush that acks the event.

        Called at every save: the order's record and its client's index record are two records of
        one flush, and a worker killed in between left orders missing from their client's view
        (the chaos run found 18 of 10,000), because the redo found the order existing. Checked once
        per order while it stays cached, so an order's later saves cost nothing here."""
        event = current_event()
        if self.clients is None or event is None or order["order_id"] in self._indexed \
                or not self._is_current(event):
            return
        client_id = order["client_id"]
        pending = self._dirty_clients.get(client_id)
        ids = list(pending[1] if pending is not None else self.clients.get(client_id) or [])
        if order["order_id"] not in ids:
            self._dirty_clients[client_id] = (event, [*ids, order["order_id"]])
        if order["order_id"] in self._cache:
            self._indexed.add(order["order_id"])

    def client_orders(self, client_id: str) -> list[Order]:
        """The client's orders held in this worker's active partitions."""
        orders = []
        pending = self._dirty_clients.get(client_id)
        for partition in self.active_partitions():
            ids = (pending[1] if pending is not None and pending[0].message.partition == partition
                   else _active_value(self.clients, client_id, [partition]))
            for order_id in ids or []:
                cached = self._cached(order_id)
                order = cached[1] if cached is not None else _active_value(self.table, order_id, [partition])
                if order is not None:
                    orders.append(dict(order))
        return orders

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
        value = _active_value(self.table, order_id, partitions)
        return None if value is None else dict(value)

    def _cached(self, order_id: str) -> tuple[int, Order | None] | None:
        """(partition, order) when the order is cached or changed; the order None when removed."""
        dirty = self._dirty.get(order_id)
        if dirty is not None:
            return dirty[0].message.partition, dirty[1]
        return self._cache.get(order_id)

    def scan(self, partition: int) -> Iterator[Order]:
        """Every order held in `partition` (used to rebuild the due index after assignment),
        orders changed but not yet written included."""
        unwritten = {k: order for k, (event, order) in self._dirty.items()
                     if event.message.partition == partition}
        yield from (order for order in unwritten.values() if order is not None)
        for order_id, value in scan_table(self.table, partition):
            if order_id not in unwritten and isinstance(value, dict):
                yield dict(value)


def scan_table(table: Any, partition: int) -> Iterator[tuple[Any, Any]]:
    """Every (key, value) of a table's partition, read from its RocksDB (Faust's store internals;
    the in-memory store of unit tests holds every partition in one dict)."""
    store = table.data
    if not hasattr(store, "_dbs"):
        yield from list(table.items())
        return
    db = store._db_for_partition(partition)
    for key, raw in store._visible_items(db):
        try:
            yield store._decode_key(key), store._decode_value(raw)
        except Exception:  # one unreadable record must not stop the scan of the rest
            log.exception("a record of partition %d cannot be decoded; skipped", partition)


def _active_value(table: Any, key: str, partitions: list[int]) -> Any:
    """`table[key]` read from the RocksDB of the given partitions only (None if none holds it)."""
    store = table.data
    if not hasattr(store, "_dbs"):  # the in-memory store: one dict for all partitions
        return table.get(key)
    raw_key = store._encode_key(key)
    for partition in partitions:
        db = store._dbs.get(partition)
        raw = db.get(raw_key) if db is not None else None
        if raw is not None:
            return store._decode_value(raw)
    return None
