"""Delayed retries: the backoff schedule, and the in-memory index of when each order is next due.

The durable truth of a pending retry (or a parked event's deadline) is the order record itself,
changelogged with the order. `DueIndex` is derived from it: rebuilt by scanning a partition's orders
whenever the partition is (re)assigned, so a worker that takes over finds every pending retry.
A heap per partition means an event due in 1 s never waits behind one due in 5 minutes.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: attempt n waits uniform(0, min(cap, base * 2**(n-1)))
    but never less than half of it, so retries spread without collapsing to zero."""

    base_s: float = 1.0
    cap_s: float = 300.0
    max_attempts: int = 8

    def ceiling(self, attempt: int) -> float:
        return min(self.cap_s, self.base_s * 2 ** max(attempt - 1, 0))

    def delay(
        self, attempt: int, retry_after_s: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait before attempt `attempt + 1`; a server's Retry-After is a lower bound."""
        ceiling = self.ceiling(attempt)
        delay = (rng or random).uniform(ceiling / 2, ceiling)
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self.cap_s))
        return delay

    def exhausted(self, attempts: int) -> bool:
        return attempts >= self.max_attempts


@dataclass
class DueIndex:
    """order_id -> due time, per partition, with a lazy-deletion heap for the earliest first."""

    _due: dict[int, dict[str, float]] = field(default_factory=dict)
    _heaps: dict[int, list[tuple[float, str]]] = field(default_factory=dict)

    def has(self, partition: int) -> bool:
        return partition in self._due

    def reset(self, partition: int) -> None:
        self._due[partition] = {}
        self._heaps[partition] = []

    def drop(self, partition: int) -> None:
        self._due.pop(partition, None)
        self._heaps.pop(partition, None)

    def set(self, partition: int, order_id: str, due: float | None) -> None:
        """Record when `order_id` is next due (None: nothing pending)."""
        dues = self._due.get(partition)
        if dues is None:
            return  # not built yet: the scan at assignment will find it
        if due is None:
            dues.pop(order_id, None)
            return
        if dues.get(order_id) != due:
            dues[order_id] = due
            heapq.heappush(self._heaps[partition], (due, order_id))

    def pop_due(self, partition: int, now: float) -> list[str]:
        """Order ids of `partition` due at `now`, removed from the index."""
        dues, heap = self._due.get(partition), self._heaps.get(partition)
        if dues is None or heap is None:
            return []
        ready = []
        while heap and heap[0][0] <= now:
            due, order_id = heapq.heappop(heap)
            if dues.get(order_id) == due:
                del dues[order_id]
                ready.append(order_id)
        return ready

    def pending(self) -> int:
        return sum(len(d) for d in self._due.values())
