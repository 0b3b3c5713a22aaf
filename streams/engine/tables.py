"""Faust tables read and written the way orderflow needs, in one place (Faust's store internals).

* **Written back, in the event's partition.** `BufferedTable.put/delete` only record the change
  with the event that made it; `write()` (called by the ack loop right before its producer flush)
  writes each changed key once, in that event's changelog partition. No event is acked before that
  flush, so a crash loses only changes whose events are redone.
* **Read per partition, in key order.** The table's key (an order id, an index entry) is not the
  partition key, so reads for views look in the partitions this worker actively owns, and ordered
  ranges (due times, a client's orders) iterate one partition's RocksDB from a prefix: the cost is
  the entries read, never the size of the table.

Keys are Faust's JSON-encoded strings; JSON escapes each character on its own, so the encoding of
a prefix minus its closing quote is a byte prefix of every key that starts with it, and ranges
are ordered by the encoded bytes (merged unwritten changes are sorted the same way).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any

import orjson
from faust.streams import current_event

from streams.engine.changelog import encodes_as_table_json, table_json
from streams.engine.context import write_changes

log = logging.getLogger(__name__)

Deleted = None  # an unwritten change that removes the key (a changelog tombstone)
SLICE = 50  # records written between two turns of the event loop (bench/RESULTS.md, 2026-12-01 23:44)
WriteSteps = Generator[None, None, bool]  # yields between slices; returns whether all were written


def drive(steps: WriteSteps) -> bool:
    """Run a write to the end at once (tests, small writes)."""
    try:
        while True:
            next(steps)
    except StopIteration as stop:
        return bool(stop.value)


async def drive_paced(steps: WriteSteps) -> bool:
    """Run a write, letting the event loop turn between slices: a flush of thousands of changed
    records held the loop for up to 2 s at 300,000 orders (no /health answer, no heartbeat)."""
    try:
        while True:
            next(steps)
            await asyncio.sleep(0)
    except StopIteration as stop:
        return bool(stop.value)


class BufferedTable:
    """A Faust table whose changes are written back at the flush (see the module docstring).

    `is_current(event)` is False for an event fetched before the last rebalance: a change it made
    is dropped (its event is redone from the committed offset by whoever owns the partition now)."""

    def __init__(self, table: Any, is_current: Callable[[Any], bool] = lambda _event: True) -> None:
        self.table = table
        self._is_current = is_current
        self._dirty: dict[str, tuple[Any, Any]] = {}  # key -> (event, value or Deleted)
        self._writing: dict[str, tuple[Any, Any]] = {}  # being written now (still to be read)
        self._parts: dict[int, set[str]] = {}  # keys of _dirty per partition (ranges read these)
        self._writing_parts: dict[int, set[str]] = {}
        self.stale_dropped = 0  # times unwritten changes were dropped (their events are redone)

    def accepting(self) -> bool:
        """False inside a job from before the last rebalance: its changes would be dropped."""
        event = current_event()
        return event is None or self._is_current(event)

    # -- one key ---------------------------------------------------------------------------------

    def get(self, key: str) -> Any:
        """The value (unwritten changes first), read in the current event's partition (a key's
        changes are written in the partition of the event that made them)."""
        dirty = self._dirty.get(key) or self._writing.get(key)
        if dirty is not None:
            return dirty[1]
        event = current_event()
        if event is None:
            return self.table.get(key)
        return value_in_partition(self.table, key, event.message.partition)

    def put(self, key: str, value: Any) -> None:
        self._change(key, value)

    def delete(self, key: str) -> None:
        self._change(key, Deleted)

    def _change(self, key: str, value: Any) -> None:
        event = current_event()
        if event is None:  # unit tests with the in-memory table: at once
            if value is Deleted:
                self.table.pop(key, None)
            else:
                self.table[key] = value
            return
        if not self._is_current(event):  # a job from before a rebalance: redone by the owner
            return
        self._dirty[key] = (event, value)
        self._parts.setdefault(event.message.partition, set()).add(key)

    def write(self) -> bool:
        return drive(self.write_steps())

    def write_steps(self) -> WriteSteps:
        """Write every changed key once; False when some must wait (Faust does not know the
        changelog topic's partitions yet): those stay unwritten, and their events unacked."""
        dirty, self._dirty = self._dirty, {}  # taken now, when called, not when first driven
        self._writing, self._writing_parts, self._parts = dirty, self._parts, {}
        return self._write(dirty)

    def _write(self, dirty: dict[str, tuple[Any, Any]]) -> WriteSteps:
        failed = False
        items = list(dirty.items())
        try:
            for start in range(0, len(items), SLICE):
                changes: list[tuple[str, Any, Any, bytes | None]] = []
                for key, (event, value) in items[start:start + SLICE]:
                    if not self._is_current(event):
                        self.stale_dropped += 1
                        continue
                    changes.append((key, event, value, None))  # a value of Deleted (None) deletes
                for (key, event, value, _), done in zip(changes, write_changes(self.table, changes),
                                                        strict=True):
                    if not done:
                        failed = True
                        if key not in self._dirty:
                            self._dirty[key] = (event, value)
                            self._parts.setdefault(event.message.partition, set()).add(key)
                if start + SLICE < len(items):
                    yield
        finally:
            self._writing, self._writing_parts = {}, {}
        return not failed

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions this worker lost: their unwritten changes go (the new owner redoes them)."""
        lost = set(partitions)
        kept = {k: v for k, v in self._dirty.items() if v[0].message.partition not in lost}
        if len(kept) != len(self._dirty):
            self.stale_dropped += 1
        self._dirty = kept
        for partition in lost:
            self._parts.pop(partition, None)

    def unwritten(self, partition: int, prefix: str = "") -> dict[str, Any]:
        """Changes of `partition` not written yet (keys starting with `prefix`): the cost is the
        partition's own changes, not every change of the worker."""
        found: dict[str, Any] = {}
        for changes, keys in ((self._writing, self._writing_parts), (self._dirty, self._parts)):
            for key in keys.get(partition, ()):
                change = changes.get(key) if key.startswith(prefix) else None
                if change is not None and change[0].message.partition == partition:
                    found[key] = change[1]
        return found

    # -- ordered ranges of one partition -----------------------------------------------------------

    def range(self, partition: int, prefix: str, *, after: str | None = None,
              until: str | None = None, limit: int = 100) -> list[tuple[str, Any]]:
        """Up to `limit` (key, value) of `partition` whose key starts with `prefix`, in key order,
        strictly after `after` and up to `until` (inclusive), unwritten changes included."""
        pending = {k: v for k, v in self.unwritten(partition, prefix).items()
                   if (after is None or self._encode(k) > self._encode(after))
                   and (until is None or self._encode(k) <= self._encode(until))}
        found: list[tuple[bytes, str, Any]] = []
        for raw, key, value in self._stored_range(partition, prefix, after, until):
            if key in pending:
                continue
            found.append((raw, key, value))
            if len(found) >= limit:
                break
        found.extend((self._encode(k), k, v) for k, v in pending.items() if v is not Deleted)
        found.sort(key=lambda item: item[0])
        return [(key, value) for _, key, value in found[:limit]]

    def _encode(self, key: str) -> bytes:
        store = getattr(self.table, "data", None)
        if store is None or not hasattr(store, "_encode_key"):  # a dict (unit tests)
            return b'"' + json_order(key) + b'"'
        encoded: bytes = store._encode_key(key)
        return encoded

    def _stored_range(self, partition: int, prefix: str, after: str | None,
                      until: str | None) -> Iterator[tuple[bytes, str, Any]]:
        store = getattr(self.table, "data", None)
        raw_prefix = self._encode(prefix)[:-1]  # without the closing quote (see the docstring)
        raw_after = self._encode(after) if after is not None else None
        raw_until = self._encode(until) if until is not None else None
        if store is None or not hasattr(store, "_dbs"):  # unit tests' one dict: sort it
            items = sorted((self._encode(k), k, v) for k, v in self.table.items()
                           if isinstance(k, str) and k.startswith(prefix))
            for raw, key, value in items:
                if (raw_after is None or raw > raw_after) and (raw_until is None or raw <= raw_until):
                    yield raw, key, value
            return
        db = store._dbs.get(partition)
        if db is None:
            return
        it = db.iter()
        it.seek(raw_after if raw_after is not None else raw_prefix)
        while it.valid():
            raw = it.key()
            if not raw.startswith(raw_prefix) or (raw_until is not None and raw > raw_until):
                return
            if raw_after is None or raw > raw_after:
                try:
                    yield raw, store._decode_key(raw), store._decode_value(it.value())
                except Exception:  # one unreadable record must not stop the rest
                    log.exception("an entry of %s[%d] cannot be decoded; skipped",
                                  self.table.name, partition)
            it.next()


def json_order(text: str) -> bytes:
    """`text` as its JSON string's bytes sort (printable text: only `\\` and `"` are escaped), to
    order keys read from RocksDB and keys merged from elsewhere the same way."""
    return text.replace("\\", "\\\\").replace('"', '\\"').encode()


def scan_table(table: Any, partition: int) -> Iterator[tuple[Any, Any]]:
    """Every (key, value) of a table's partition, read from its RocksDB (the in-memory store of
    unit tests holds every partition in one dict). For tools and tests: a worker never scans."""
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


def value_in_partition(table: Any, key: str, partition: int) -> Any:
    """`table.get(key)` for a key of `partition` (its event's), in one RocksDB read: Faust's own
    `get` reads twice for a key that is there (`in`, then the value), and for a key that is not,
    reads every partition's database (its key index knows only keys it saw)."""
    store = table.data
    db = store._dbs.get(partition) if hasattr(store, "_dbs") else None
    if db is None:  # the in-memory store of unit tests, or a partition not open here
        return table.get(key)
    if _plain_json(table):  # Faust's codec, without its registry's lookups (engine/changelog.py)
        raw = db.get(table_json(key))
        return orjson.loads(raw) if raw is not None else None
    raw = db.get(store._encode_key(key))
    return store._decode_value(raw) if raw is not None else None


_plain: dict[int, bool] = {}


def _plain_json(table: Any) -> bool:
    plain = _plain.get(id(table))
    if plain is None:
        plain = _plain[id(table)] = encodes_as_table_json(table.app, table)
    return plain


def active_value(table: Any, key: str, partitions: list[int]) -> Any:
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
