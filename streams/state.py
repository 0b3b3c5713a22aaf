"""The order table: one Faust Table (RocksDB via rocksdict, changelogged) keyed by order_id.

The table's key (order_id) is not the partition key (client_id), and outside producers may use any
partitioner, so nothing here computes a partition from a key: writes go to the partition of the
event being processed (Faust's current-event context), and reads for views look in the partitions
this worker actively owns. Those two reads reach into Faust's RocksDB store; they live here only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from streams.machine import Order


class OrderStore:
    """Typed access to the order table."""

    def __init__(self, table: Any, source_topic: str, clients: Any = None) -> None:
        self.table = table
        self.source_topic = source_topic
        self.clients = clients  # client_id -> [order_id, ...]: the index behind /clients/{id}/orders

    def get(self, order_id: str) -> Order | None:
        """The order, read while processing an event of its partition."""
        value = self.table.get(order_id)
        return None if value is None else dict(value)

    def put(self, order: Order) -> None:
        """Write the order: one RocksDB put and one changelog record, in the current event's partition."""
        self.table[order["order_id"]] = order

    def add_to_client(self, order: Order) -> None:
        """Index a new order under its client (same partition as the order: the event's)."""
        if self.clients is None:
            return
        ids = list(self.clients.get(order["client_id"]) or [])
        if order["order_id"] not in ids:
            self.clients[order["client_id"]] = [*ids, order["order_id"]]

    def client_orders(self, client_id: str) -> list[Order]:
        """The client's orders held in this worker's active partitions."""
        orders = []
        for partition in self.active_partitions():
            for order_id in _active_value(self.clients, client_id, [partition]) or []:
                order = _active_value(self.table, order_id, [partition])
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
        value = _active_value(self.table, order_id, self.active_partitions())
        return None if value is None else dict(value)

    def scan(self, partition: int) -> Iterator[Order]:
        """Every order held in `partition` (used to rebuild the due index after assignment)."""
        store = self._store()
        if not hasattr(store, "_dbs"):
            for value in list(self.table.values()):
                yield dict(value)
            return
        db = store._db_for_partition(partition)
        for _key, raw in store._visible_items(db):
            yield dict(store._decode_value(raw))


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
