"""Table recovery in bulk: a cold start reads its changelogs at librdkafka's speed.

Faust recovers a table by turning every changelog record into an `Event`, queueing it and applying
it from `Recovery._slurp_changelogs`, one `asyncio.wait_for` per record: about 20-25k records/s
here, 268 s for a million orders. Here, once Faust knows where each active changelog partition's
store stands and where its log ends (`_build_offsets`), the records in between are read with a
confluent-kafka consumer (no group: assigned partitions, fetched by librdkafka's own threads) and
written to the partition's RocksDB in write batches that carry the partition's offset with them, so
a crash mid-way resumes from the last batch. Faust's own recovery then starts at the end and has
nothing left to read; it still does everything else (standbys, the flow, `/ready`).

The work runs on the event loop in slices of `SLICE` records with a yield between them (the web
server answers meanwhile), and stops at `deadline_s` (below the time Faust allows the step), leaving
the rest to Faust's path. Only Faust's RocksDB store is loaded this way; other stores (memory://
in tests) recover the usual way.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import time
from collections import Counter
from typing import Any, ClassVar

import rocksdict
from confluent_kafka import Consumer, KafkaError, TopicPartition
from faust.tables import TableManager
from faust.tables.recovery import Recovery
from faust.types import TP

from streams.engine.rocksdb import Store

log = logging.getLogger(__name__)

#: records applied per event-loop turn (about 5 ms of work: 5,000 held the loop for 25 ms and more)
SLICE = 1_000
#: partitions this far behind or less are left to Faust's own path (not worth a client)
MIN_BULK = 1_000
PROGRESS_EVERY_S = 5.0


class BulkRecovery(Recovery):
    """Faust's recovery with the bulk of the active changelogs read by `load_changelogs`."""

    client_config: ClassVar[dict[str, Any]] = {}

    async def _build_offsets(self, consumer: Any, tps: set[TP], destination: Counter[TP],
                             title: str) -> None:
        await super()._build_offsets(consumer, tps, destination, title)
        if title != "active":
            return
        plan: dict[TP, tuple[Store, int, int]] = {}
        for tp in tps:
            store = getattr(self.tp_to_table[tp], "data", None)
            start, end = destination[tp], self.active_highwaters[tp]
            if isinstance(store, Store) and end is not None and end - start > MIN_BULK:
                plan[tp] = (store, start, end)
        if plan:
            deadline = 0.8 * float(self.app.conf.broker_request_timeout)
            await load_changelogs(self.client_config, plan, destination, deadline)


def table_manager(client_config: dict[str, Any]) -> type[TableManager]:
    """Faust's TableManager whose recovery is `BulkRecovery`, reading with `client_config`
    (confluent-kafka connection settings); give it to the app as `TableManager=`."""
    recovery = type("BulkRecovery", (BulkRecovery,), {"client_config": dict(client_config)})

    class BulkTableManager(TableManager):
        @property
        def recovery(self) -> Recovery:
            if self._recovery is None:
                self._recovery = recovery(self.app, self, beacon=self.beacon, loop=self.loop)
            return self._recovery

    return BulkTableManager


async def load_changelogs(client_config: dict[str, Any], plan: dict[TP, tuple[Store, int, int]],
                          offsets: Counter[TP], deadline_s: float) -> None:
    """Apply each partition's records after `start` up to `end` (its last offset) to its store;
    `offsets[tp]` follows what is written, so Faust goes on from there."""
    total = sum(end - start for _, start, end in plan.values())
    log.info("Bulk recovery: %d changelog partitions, about %d records", len(plan), total)
    consumer = Consumer({
        **client_config, "group.id": "orderflow-bulk-recovery", "enable.auto.commit": False,
        "enable.partition.eof": True, "auto.offset.reset": "earliest",
        "fetch.max.bytes": 64 * 1024 * 1024, "max.partition.fetch.bytes": 8 * 1024 * 1024,
    })
    started = last_report = time.monotonic()
    applied = 0
    try:
        consumer.assign([TopicPartition(tp.topic, tp.partition, start + 1)
                         for tp, (_, start, _) in plan.items()])
        by_name: dict[tuple[str | None, int | None], TP] = {(tp.topic, tp.partition): tp for tp in plan}
        remaining = set(plan)
        while remaining:
            if time.monotonic() - started > deadline_s:
                log.warning("Bulk recovery stopped after %.0f s with %d partitions left; Faust's "
                            "recovery reads the rest", deadline_s, len(remaining))
                return
            messages = consumer.consume(num_messages=SLICE, timeout=0)
            if not messages:
                await asyncio.sleep(0.005)
                continue
            batches: dict[TP, Batch] = {}
            for message in messages:
                tp = by_name[(message.topic(), message.partition())]
                if tp not in remaining:
                    continue
                error = message.error()
                end = plan[tp][2]
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(f"reading changelog {tp.topic}[{tp.partition}]: {error.str()}")
                    # the log ends before `end` (its last records compacted or aborted): done
                    batches.setdefault(tp, Batch()).last = max(end, offsets[tp])
                    remaining.discard(tp)
                    continue
                offset = message.offset() or 0
                if offset > end:  # written after the recovery began: Faust's path reads it
                    remaining.discard(tp)
                    continue
                batch = batches.setdefault(tp, Batch())
                batch.add(message.key(), message.value(), offset)
                if offset >= end:
                    remaining.discard(tp)
            for tp, batch in batches.items():
                if batch.last is not None:
                    plan[tp][0].write_changelog_batch(tp, batch.batch, batch.last)
                    offsets[tp] = batch.last
                    applied += batch.count
            now = time.monotonic()
            if now - last_report >= PROGRESS_EVERY_S:
                last_report = now
                log.info("Bulk recovery: %d of about %d records (%.0f/s)",
                         applied, total, applied / (now - started))
            await asyncio.sleep(0)
    finally:
        consumer.close()
    await asyncio.to_thread(release_free_memory)  # off the loop: trimming a large heap takes a while
    took = time.monotonic() - started
    log.info("Bulk recovery done: %d records in %.1f s (%.0f/s)", applied, took, applied / max(took, 1e-9))


def release_free_memory() -> None:
    """Give the heap's free pages back to the system (glibc's malloc_trim): a bulk read's buffers,
    freed, otherwise stay in the worker's RSS. Elsewhere than glibc, nothing."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class Batch:
    """One partition's records of a slice, as a RocksDB write batch."""

    __slots__ = ("batch", "count", "last")

    def __init__(self) -> None:
        self.batch = rocksdict.WriteBatch(raw_mode=True)
        self.count = 0
        self.last: int | None = None

    def add(self, key: bytes | None, value: bytes | None, offset: int) -> None:
        if key is not None:
            if value is None:
                self.batch.delete(key)
            else:
                self.batch.put(key, value)
            self.count += 1
        self.last = offset

