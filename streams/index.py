"""Ordered indexes of the orders, in one table (`order-index`), each entry in its order's partition.

Three key spaces, each read as a range of one partition, so every read and write costs the same for
a partition's first and millionth order (nothing here scans a partition):

    d:{due_ms:013d}:{order_id}                       -> order_id  when it next needs a timed look
    c:{len(client_id):03d}:{client_id}:{newest_first_ms:013d}:{order_id} -> ""
                                                                 a client's orders, newest first
    s:{order_id}                                     -> {"status", "since"}  orders marked stuck

The due entries replace the scan of every order that rebuilt an in-memory due index after each
assignment and sweep: a tick reads only the entries due now. The client entries replace one list
per client (rewritten whole for every new order). A client entry is written once, when the order is
created (an entry that changed with each transition doubled the changelog records per event);
`?status=` reads the orders of the entries it walks, at most `scan_limit` per partition.
The length prefix keeps one client's range from running into another's (`a` vs `a:b`).
"""

from __future__ import annotations

import base64
import binascii
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from streams.core import machine as m
from streams.engine.tables import json_order

MAX_MS = 10**13 - 1  # 13 digits of milliseconds: until the year 2286


class Entries(Protocol):
    """`streams.engine.tables.BufferedTable`."""

    stale_dropped: int

    def accepting(self) -> bool: ...
    def get(self, key: str) -> Any: ...
    def put(self, key: str, value: Any) -> None: ...
    def delete(self, key: str) -> None: ...
    def range(self, partition: int, prefix: str, *, after: str | None = None,
              until: str | None = None, limit: int = 100) -> list[tuple[str, Any]]: ...


@dataclass(frozen=True)
class Due:
    key: str
    order_id: str
    at_ms: int


#: What an order's entries say: (whether it has a client entry, its due time in ms, whether it is
#: stuck). A plain tuple of plain values, which the garbage collector stops tracking: a frozen
#: dataclass per known order was 20,000 more objects for every young collection to walk.
Indexed = tuple[bool, int | None, bool]
NOT_INDEXED: Indexed = (False, None, False)


def indexed(order: m.Order | None) -> Indexed:
    if order is None:
        return NOT_INDEXED
    due = order.get("due_at")
    return (True, None if due is None else due_ms(due), bool(order.get("stuck")))


@dataclass(frozen=True)
class ClientEntry:
    order_id: str
    cursor: str  # where the next page starts (opaque to users)


class BadCursor(ValueError):
    pass


def due_ms(due: float) -> int:
    """A due time in whole milliseconds, rounded up: an entry is read only once it is due."""
    return min(MAX_MS, max(0, math.ceil(due * 1000)))


def _client_prefix(client_id: str) -> str:
    return f"c:{len(client_id):03d}:{client_id}:"


def _client_key(order: m.Order) -> str:
    created = m.parse_time(order["created_at"]) or 0.0
    return f"{_client_prefix(order['client_id'])}{MAX_MS - due_ms(created):013d}:{order['order_id']}"


def encode_cursor(suffix: str) -> str:
    return base64.urlsafe_b64encode(suffix.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadCursor("not a cursor this view gave") from None
    ms, sep, order_id = text.partition(":")
    if len(ms) != 13 or not ms.isdigit() or not sep or not order_id:
        raise BadCursor("not a cursor this view gave")
    return text


@dataclass(frozen=True)
class ClientPage:
    entries: list[ClientEntry]
    next: str | None  # the cursor of the next page; None: nothing after this page
    bound: str | None = None  # a short page looked only up to here (with ?status=)


def cursor_order(cursor: str) -> bytes:
    """Cursors sort the way their keys sort in RocksDB (see streams/engine/tables.py)."""
    return json_order(decode_cursor(cursor))


def merge_pages(pages: Iterable[list[ClientEntry]], bounds: Iterable[str], limit: int) -> ClientPage:
    """One page from several (partitions, workers): newest first, none past the nearest bound."""
    bound = min(bounds, key=cursor_order, default=None)
    entries = sorted((e for page in pages for e in page), key=lambda e: cursor_order(e.cursor))
    if bound is not None:
        entries = [e for e in entries if cursor_order(e.cursor) <= cursor_order(bound)]
    if len(entries) >= limit:
        return ClientPage(entries[:limit], entries[limit - 1].cursor, bound)
    return ClientPage(entries, bound, bound)


class OrderIndex:
    """Due times, client entries and stuck marks of orders (see the module docstring)."""

    def __init__(self, entries: Entries, scan_limit: int = 2_000, known_size: int = 20_000) -> None:
        self.entries = entries
        self.scan_limit = scan_limit  # entries one page may read per partition (with ?status=)
        self.known_size = known_size
        self._known: OrderedDict[str, Indexed] = OrderedDict()  # orders whose entries are right
        self._stale_seen = 0

    # -- due times ---------------------------------------------------------------------------

    def reschedule(self, order_id: str, old: float | None, new: float | None) -> None:
        """Move the order's due entry from `old` to `new` (None: no entry)."""
        if old is not None and (new is None or due_ms(old) != due_ms(new)):
            self.entries.delete(f"d:{due_ms(old):013d}:{order_id}")
        if new is not None and (old is None or due_ms(old) != due_ms(new)):
            self.entries.put(f"d:{due_ms(new):013d}:{order_id}", order_id)

    def due(self, partition: int, now: float, limit: int) -> list[Due]:
        """The earliest entries of `partition` due at `now`, at most `limit`."""
        now_ms = min(MAX_MS, int(now * 1000))
        found = self.entries.range(partition, "d:", until=f"d:{now_ms:013d};", limit=limit)
        return [Due(key, str(value), int(key[2:15])) for key, value in found]

    def drop_due(self, entry: Due) -> None:
        """An entry that no longer matches its order (the order moved on, or left)."""
        self.entries.delete(entry.key)

    # -- keeping the entries in step with the orders ------------------------------------------

    def look(self, order: m.Order) -> None:
        """An order read to take an event: `sync(order, order)`, which checks its entries the first
        time, and nothing at all once this index made them right (the order changes only through
        `sync` and `remove` after that, and whatever else could change it, a rebalance or changes
        dropped as stale, clears what is remembered here)."""
        if order["order_id"] in self._known and self.entries.stale_dropped == self._stale_seen:
            return
        self.sync(order, order)

    def sync(self, order: m.Order, before: m.Order | None) -> None:
        """Make the order's entries say what the order says: its client entry,
        its due entry, its stuck mark. `before` is the record as stored.

        The order's record and its entries are records of one flush, and a worker killed in between
        can land one without the other; the redo then finds the order changed already (chaos once
        left 18 orders out of their client's view that way). So the first look at an order since
        it was loaded also checks that its entries exist; after that, while the order's state is
        remembered here, an unchanged order costs nothing."""
        if not self.entries.accepting():
            return  # a job from before a rebalance: its changes are redone
        if self.entries.stale_dropped != self._stale_seen:  # unwritten changes were dropped
            self._stale_seen = self.entries.stale_dropped
            self._known.clear()
        order_id = order["order_id"]
        new = indexed(order)
        known = self._known.get(order_id)
        if known == new:
            self._known.move_to_end(order_id)
            return
        listed, due, stuck = known or indexed(before)
        _, new_due, new_stuck = new
        if not listed or known is None:
            key = _client_key(order)
            if not listed or self.entries.get(key) is None:
                self.entries.put(key, "")
        if due != new_due:
            if due is not None:
                self.entries.delete(f"d:{due:013d}:{order_id}")
            if new_due is not None:
                self.entries.put(f"d:{new_due:013d}:{order_id}", order_id)
        elif known is None and new_due is not None \
                and self.entries.get(f"d:{new_due:013d}:{order_id}") is None:
            self.entries.put(f"d:{new_due:013d}:{order_id}", order_id)
        if stuck != new_stuck or (known is None and new_stuck):
            if new_stuck:
                self.entries.put(f"s:{order_id}", order["stuck"])
            else:
                self.entries.delete(f"s:{order_id}")
        self._known[order_id] = new
        while len(self._known) > self.known_size:
            self._known.popitem(last=False)

    def remove(self, order: m.Order) -> None:
        """A removed order's entries go too (its marker's due entry is set apart)."""
        if not self.entries.accepting():
            return
        known = self._known.pop(order["order_id"], None)
        _, due, stuck = known or indexed(order)
        self.entries.delete(_client_key(order))
        if due is not None:
            self.entries.delete(f"d:{due:013d}:{order['order_id']}")
        if stuck:
            self.entries.delete(f"s:{order['order_id']}")

    def forget(self) -> None:
        """After a rebalance: check every order's entries again at its next look."""
        self._known.clear()

    def client_page(self, partitions: Iterable[int], client_id: str, after: str | None,
                    limit: int, status: str | None,
                    status_of: Callable[[str], str | None] = lambda _order_id: None) -> ClientPage:
        """Up to `limit` entries of the client, newest first, after the cursor, from `partitions`
        (a client's orders may sit in several partitions when producers used different
        partitioners). With `status`, each entry's order is read (`status_of`) and the others
        skipped, at most `scan_limit` per partition: a page may then be short, and its `bound`
        says how far it looked."""
        prefix = _client_prefix(client_id)
        start = prefix + decode_cursor(after) if after is not None else None
        found: list[ClientEntry] = []
        bounds: list[str] = []
        for partition in partitions:
            position, taken, read = start, 0, 0
            while taken < limit:
                chunk = self.entries.range(partition, prefix, after=position,
                                           limit=min(self.scan_limit - read, max(limit, 100)))
                read += len(chunk)
                for key, _ in chunk:
                    position = key
                    suffix = key[len(prefix):]
                    order_id = suffix.split(":", 1)[1]
                    if status is None or status_of(order_id) == status:
                        found.append(ClientEntry(order_id, encode_cursor(suffix)))
                        taken += 1
                        if taken >= limit:
                            break
                if not chunk or read >= self.scan_limit:
                    if chunk and taken < limit:  # looked as far as allowed, not to the end
                        bounds.append(chunk[-1][0][len(prefix):])
                    break
        return merge_pages([found], [encode_cursor(b) for b in bounds], limit)

    # -- stuck marks -------------------------------------------------------------------------

    def stuck(self, partition: int, limit: int) -> list[tuple[str, dict[str, Any]]]:
        return [(key[2:], value) for key, value in self.entries.range(partition, "s:", limit=limit)]
