"""Markers of removed orders: a finished order leaves the `orders` table after
ORDERFLOW_FINISHED_RETENTION_S, and a small marker in the `closed-orders` table says it was there,
so a late event of it is dead-lettered as `order_closed` instead of starting a new order. A marker
is kept for the idempotency retention (ORDERFLOW_IDEMPOTENCY_RETENTION_S), then removed too.

    {"order_id", "client_id", "status", "version", "closed_at": epoch, "letters": {id: epoch}}

Written like the orders (the store's write-back): with the flush that acks the event or tick that
changed them, in that event's changelog partition.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, cast

from streams.core.machine import ClosedMarker
from streams.engine.tables import BufferedTable, WriteSteps

Marker = ClosedMarker


class ClosedOrders:
    """`get`, `put` and `drop` markers; `write` them with the ack loop's flush."""

    def __init__(self, table: Any, is_current: Callable[[Any], bool] = lambda _event: True) -> None:
        self.table = table
        self._markers = BufferedTable(table, is_current)

    def get(self, order_id: str) -> Marker | None:
        value = self._markers.get(order_id)
        return cast(Marker, dict(value)) if isinstance(value, dict) else None

    def put(self, marker: Marker) -> None:
        self._markers.put(marker["order_id"], marker)

    def drop(self, order_id: str) -> None:
        self._markers.delete(order_id)

    def write_steps(self) -> WriteSteps:
        """Write every changed marker, a slice at a time (the changed markers are taken when
        called); False when some must wait (changelog not known yet)."""
        return self._markers.write_steps()

    def forget(self, partitions: Iterable[int]) -> None:
        self._markers.forget(partitions)
