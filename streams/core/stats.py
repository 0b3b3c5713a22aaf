"""Counters and a census of orders, per partition, behind `/stats` and `/metrics`.

Two kinds of numbers, kept apart because they survive failover differently:

* **counters** (events processed, duplicates, retries, dead letters): counted in memory per
  partition, written to the `partition-stats` table with the flush that acks the events (in the
  partition's changelog), and restored from it before a partition counts or reports anything. What
  `/stats` reports is the count as of the partition's last delivered write, so no counter ever goes
  backwards: not after a rebalance, a restart or a SIGKILL (events redone after a crash may be
  counted twice; a count is at least what it was). Before, counters were written by a tick and
  restored at the next one: a worker that rejoined its group reported 97k processed after 862k.
* **census** (orders by status, pending retries, parked events, stuck orders): kept current by the
  change of each saved record, and written and restored with the counters. Nothing scans the
  orders (at a million orders a scan at each assignment stalled the worker for seconds). A worker
  killed inside one flush can land some orders' records without the census that counts them; the
  redo finds them changed already, so the census can be off by the orders of that one flush.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from typing import Any

from streams.core.deadletters import DeadLetter
from streams.core.machine import Order

_STATUS_KEYS: dict[str, str] = {}  # status -> its census key, made once (a lifecycle has a few)


def _status_key(status: str) -> str:
    key = _STATUS_KEYS[status] = f"status.{status}"
    return key


def _count_in(census: Counter[str], order: Order, sign: int) -> None:
    """Add (sign 1) or take away (sign -1) what one order counts for in a census (in place: a
    Counter per order and side cost a fifth of saving an order)."""
    status = order["status"]
    if status is not None:
        census[_STATUS_KEYS.get(status) or _status_key(status)] += sign
    if order["retry"] is not None:
        census["retry_pending"] += sign
    census["parked"] += sign * len(order["parked"])
    if order.get("stuck"):
        census["stuck"] += sign


Load = Callable[[int], "dict[str, Any] | None"]


class PartitionStats:
    """`load(partition)` reads a partition's saved record (None: nothing saved, or no table)."""

    def __init__(self, recent: int = 20, load: Load | None = None) -> None:
        self.totals: Counter[str] = Counter()  # this process's lifetime (Prometheus counters)
        self.counts: dict[int, Counter[str]] = {}  # live: every count so far
        self.reported: dict[int, Counter[str]] = {}  # as of the last delivered write
        self.census: dict[int, Counter[str]] = {}
        self.restored: set[int] = set()
        self.dirty: set[int] = set()
        self.recent_dead_letters: deque[DeadLetter] = deque(maxlen=recent)
        self.started = time.time()
        self._load = load
        self._writing: dict[int, Counter[str]] = {}  # written, waiting for the flush

    def count(self, partition: int, key: str, n: int = 1) -> None:
        self._restore(partition)
        self.totals[key] += n
        self.counts[partition][key] += n
        self.dirty.add(partition)

    def count_all(self, partition: int, counts: dict[str, int]) -> None:
        """`count` for each of a decision's counts, the partition looked up once."""
        if partition not in self.restored:
            self._restore(partition)
        totals, mine = self.totals, self.counts[partition]
        for key, n in counts.items():
            totals[key] += n
            mine[key] += n
        self.dirty.add(partition)

    def _restore(self, partition: int) -> None:
        """Once per assignment, before anything is counted or reported: the saved counters."""
        if partition in self.restored:
            return
        saved = self._load(partition) if self._load is not None else None
        saved = saved if isinstance(saved, dict) else {}
        counts: Counter[str] = Counter(saved.get("counts", {}))
        self.counts[partition] = counts
        self.reported[partition] = Counter(counts)
        self.census[partition] = Counter(saved.get("census", {}))
        self.restored.add(partition)

    def changed(self, partition: int, before: Order | None, after: Order | None) -> None:
        """An order record was saved: move its census contribution from `before` to `after`."""
        if partition not in self.restored:
            self._restore(partition)
        census = self.census[partition]
        if after is not None:
            _count_in(census, after, 1)
        if before is not None:
            _count_in(census, before, -1)
        self.dirty.add(partition)

    def persisted(self, partition: int) -> dict[str, Any]:
        """The partition's counters to write now; they are reported once `flushed()` says the
        write was delivered."""
        self.dirty.discard(partition)
        self._writing[partition] = Counter(self.counts.get(partition, {}))
        census = {k: v for k, v in self.census.get(partition, Counter()).items() if v}
        return {"counts": dict(self._writing[partition]), "census": census, "at": time.time()}

    def flushed(self) -> None:
        """The writes since the last call were delivered: report them."""
        for partition, counts in self._writing.items():
            if partition in self.restored:
                self.reported[partition] = counts
        self._writing = {}

    def forget(self, partition: int) -> None:
        for table in (self.counts, self.census, self.reported, self._writing):
            table.pop(partition, None)
        self.restored.discard(partition)
        self.dirty.discard(partition)

    def dead_letter(self, letter: DeadLetter) -> None:
        self.recent_dead_letters.append(letter)

    def local(self, partitions: Iterable[int]) -> dict[str, Any]:
        """This worker's share for `/stats?local=1`: per owned partition, counters and census."""
        for p in partitions:
            self._restore(p)
        return {
            str(p): {"counts": dict(self.reported.get(p, {})),
                     "census": {k: v for k, v in self.census[p].items() if v}}
            for p in partitions
        }


def merge(shares: Iterable[dict[str, Any]], expected_partitions: int) -> dict[str, Any]:
    """Cluster totals from the workers' local shares (a partition reported twice counts once)."""
    partitions: dict[str, dict[str, Any]] = {}
    workers: dict[str, list[int]] = {}
    recent: list[dict[str, Any]] = []
    stuck: set[str] = set()
    lag: dict[str, int] = {}
    for share in shares:
        stuck.update(share.get("stuck_orders", []))
        for where, n in share.get("lag", {}).items():
            lag[where] = max(n, lag.get(where, 0))  # a partition moving between workers: the larger
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
        "orders": {"total": sum(by_status.values()), "by_status": by_status,
                   "stuck": census["stuck"], "stuck_examples": sorted(stuck)[:20]},
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
        "lag": {"total": sum(lag.values()),
                "partitions": [{"topic": where.rpartition(":")[0], "partition": int(where.rpartition(":")[2]),
                                "lag": n} for where, n in sorted(lag.items())]},
        "partitions": {"reported": len(partitions), "expected": expected_partitions},
        "complete": complete,
    }
