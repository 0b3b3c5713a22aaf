"""Counters and a census of orders, per partition, behind `/stats` and `/metrics`.

Two kinds of numbers, kept apart because they survive failover differently:

* **counters** (events processed, duplicates, retries, dead letters): counted in memory per
  partition and written to the `partition-stats` table by that partition's tick, inside its stream
  context, so the worker that takes a partition over starts from them. Around a crash they can be
  off by the events of the last tick interval (at-least-once, like Faust's own offsets).
* **census** (orders by status, pending retries, parked events): derived from the order records
  themselves, rebuilt by scanning a partition when it is assigned and kept current by the change of
  each saved record, so it is exact.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Iterable
from typing import Any

from streams.machine import Order


def _census_of(order: Order | None) -> Counter[str]:
    census: Counter[str] = Counter()
    if order is None:
        return census
    if order["status"] is not None:
        census[f"status.{order['status']}"] += 1
    if order["retry"] is not None:
        census["retry_pending"] += 1
    census["parked"] += len(order["parked"])
    return census


class PartitionStats:
    def __init__(self, recent: int = 20) -> None:
        self.totals: Counter[str] = Counter()  # this process's lifetime (Prometheus counters)
        self.counts: dict[int, Counter[str]] = {}
        self.census: dict[int, Counter[str]] = {}  # only for partitions scanned since assignment
        self.restored: set[int] = set()
        self.dirty: set[int] = set()
        self.recent_dead_letters: deque[dict[str, Any]] = deque(maxlen=recent)
        self.started = time.time()

    def count(self, partition: int, key: str, n: int = 1) -> None:
        self.totals[key] += n
        self.counts.setdefault(partition, Counter())[key] += n
        self.dirty.add(partition)

    def changed(self, partition: int, before: Order | None, after: Order) -> None:
        """An order record was saved: move its census contribution from `before` to `after`."""
        census = self.census.get(partition)
        if census is not None:
            census.update(_census_of(after))
            census.subtract(_census_of(before))

    def rebuild(self, partition: int, orders: Iterable[Order]) -> None:
        census: Counter[str] = Counter()
        for order in orders:
            census.update(_census_of(order))
        self.census[partition] = census

    def restore(self, partition: int, saved: dict[str, Any] | None) -> bool:
        """Once per assignment: add the partition's saved counters to what was counted since."""
        if partition in self.restored:
            return False
        self.restored.add(partition)
        if saved:
            self.counts.setdefault(partition, Counter()).update(saved.get("counts", {}))
        self.dirty.add(partition)
        return True

    def persisted(self, partition: int) -> dict[str, Any]:
        """The partition's counters as written to the stats table."""
        self.dirty.discard(partition)
        return {"counts": dict(self.counts.get(partition, {})), "at": time.time()}

    def forget(self, partition: int) -> None:
        for table in (self.counts, self.census):
            table.pop(partition, None)
        self.restored.discard(partition)
        self.dirty.discard(partition)

    def dead_letter(self, letter: dict[str, Any]) -> None:
        self.recent_dead_letters.append(letter)

    def local(self, partitions: Iterable[int]) -> dict[str, Any]:
        """This worker's share for `/stats?local=1`: per owned partition, counters and census."""
        return {
            str(p): {"counts": dict(self.counts.get(p, {})),
                     "census": None if p not in self.census else
                     {k: v for k, v in self.census[p].items() if v}}
            for p in partitions
        }


def merge(shares: Iterable[dict[str, Any]], expected_partitions: int) -> dict[str, Any]:
    """Cluster totals from the workers' local shares (a partition reported twice counts once)."""
    partitions: dict[str, dict[str, Any]] = {}
    workers: dict[str, list[int]] = {}
    recent: list[dict[str, Any]] = []
    for share in shares:
        workers[share["worker"]] = sorted(int(p) for p in share["partitions"])
        for p, numbers in share["partitions"].items():
            partitions.setdefault(p, numbers)
        recent.extend(share.get("recent_dead_letters", []))
    counts: Counter[str] = Counter()
    census: Counter[str] = Counter()
    complete = len(partitions) == expected_partitions
    for numbers in partitions.values():
        counts.update(numbers["counts"])
        if numbers["census"] is None:
            complete = False
        else:
            census.update(numbers["census"])
    by_status = {k.split(".", 1)[1]: v for k, v in sorted(census.items()) if k.startswith("status.")}
    recent = list({str(letter.get("id", id(letter))): letter for letter in recent}.values())
    recent.sort(key=lambda letter: str(letter.get("failed_at", "")), reverse=True)
    return {
        "orders": {"total": sum(by_status.values()), "by_status": by_status},
        "events": {"processed": counts["events"], "applied": counts["applied"],
                   "duplicates_dropped": counts["duplicates"], "invalid": counts["events.invalid"],
                   "rejected": counts["rejected"]},
        "retries": {"scheduled": counts["retries.scheduled"], "fired": counts["retries.fired"],
                    "pending": census["retry_pending"]},
        "parked": census["parked"],
        "dead_letters": {"total": counts["dead_letters"],
                         "by_kind": {k.split(".", 1)[1]: v for k, v in sorted(counts.items())
                                     if k.startswith("dead_letters.")},
                         "recent": recent[:20]},
        "workers": workers,
        "partitions": {"reported": len(partitions), "expected": expected_partitions},
        "complete": complete,
    }
