"""Markers of removed orders: a finished order leaves the `orders` table after
ORDERFLOW_FINISHED_RETENTION_S, and a small marker in the `closed-orders` table says it was there,
so a late event of it is dead-lettered as `order_closed` instead of starting a new order. A marker
is kept for the idempotency retention (ORDERFLOW_IDEMPOTENCY_RETENTION_S), then removed too.

    {"order_id", "client_id", "status", "version", "closed_at": epoch, "letters": {id: epoch}}

Written like the orders (the store's write-back): with the flush that acks the event or tick that
changed them, in that event's changelog partition.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from faust.streams import current_event

from streams.engine.context import delete_in_context, detached, write_in_context
from streams.state import scan_table

Marker = dict[str, Any]


class ClosedOrders:
    """`get`, `put` and `drop` markers; `write` them with the ack loop's flush."""

    def __init__(self, table: Any, is_current: Callable[[Any], bool] = lambda _event: True) -> None:
        self.table = table
        self._is_current = is_current
        self._dirty: dict[str, tuple[Any, Marker | None]] = {}  # order_id -> (event, marker or None)

    def get(self, order_id: str) -> Marker | None:
        dirty = self._dirty.get(order_id)
        if dirty is not None:
            return dirty[1]
        value = self.table.get(order_id)
        return dict(value) if isinstance(value, dict) else None

    def put(self, marker: Marker) -> None:
        self._change(marker["order_id"], marker)

    def drop(self, order_id: str) -> None:
        self._change(order_id, None)

    def _change(self, order_id: str, marker: Marker | None) -> None:
        event = current_event()
        if event is None:  # unit tests with the in-memory table: at once
            if marker is None:
                self.table.pop(order_id, None)
            else:
                self.table[order_id] = marker
            return
        if not self._is_current(event):  # a job from before a rebalance: redone by its new owner
            return
        self._dirty[order_id] = (event, marker)

    def write(self) -> bool:
        """Write every changed marker; False when some must wait (changelog not known yet)."""
        dirty, self._dirty = self._dirty, {}
        with detached():
            for order_id, (event, marker) in dirty.items():
                if not self._is_current(event):
                    continue  # from before a rebalance: redone by the new owner
                done = (write_in_context(self.table, order_id, event, marker) if marker is not None
                        else delete_in_context(self.table, order_id, event))
                if not done:
                    self._dirty.setdefault(order_id, (event, marker))
        return not self._dirty

    def forget(self, partitions: Iterable[int]) -> None:
        lost = set(partitions)
        self._dirty = {k: v for k, v in self._dirty.items() if v[0].message.partition not in lost}

    def scan(self, partition: int) -> Iterator[Marker]:
        """Every marker of `partition` (to know when each expires, after an assignment)."""
        unwritten = {k: m for k, (event, m) in self._dirty.items() if event.message.partition == partition}
        yield from (m for m in unwritten.values() if m is not None)
        for order_id, value in scan_table(self.table, partition):
            if order_id not in unwritten and isinstance(value, dict):
                yield dict(value)
