"""The ordered order index: a client's pages walk every order once, newest first, merged across
partitions or workers; a new order costs the same whatever its client already holds."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.machine import new_order, rfc3339
from streams.engine.tables import BufferedTable
from streams.index import BadCursor, OrderIndex, decode_cursor, merge_pages


class CountingTable(dict):  # type: ignore[type-arg]
    """A table that counts what is written into it (records and bytes)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.bytes = 0

    def __setitem__(self, key: str, value: Any) -> None:
        self.writes += 1
        self.bytes += len(key) + len(json.dumps(value))
        super().__setitem__(key, value)


def order(order_id: str, client_id: str, created: float, status: str = "created") -> dict[str, Any]:
    base = new_order({"order_id": order_id, "client_id": client_id}, created)
    return {**base, "status": status, "version": 1, "created_at": rfc3339(created)}


def walk(indexes: list[OrderIndex], client_id: str, limit: int, status: str | None = None,
         statuses: dict[str, str] | None = None) -> list[str]:
    ids: list[str] = []
    cursor = None
    status_of = (statuses or {}).get
    for _ in range(10_000):
        pages = [i.client_page([0], client_id, cursor, limit, status, status_of) for i in indexes]
        merged = merge_pages([p.entries for p in pages], [p.bound for p in pages if p.bound], limit)
        assert len(merged.entries) <= limit
        ids.extend(e.order_id for e in merged.entries)
        cursor = merged.next
        if cursor is None:
            return ids
    raise AssertionError("no end")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.sampled_from(["created", "paid"]), st.booleans()),
                min_size=0, max_size=60),
       st.integers(1, 9), st.sampled_from([None, "paid"]), st.integers(1, 30))
def test_a_cursor_walks_every_order_once_newest_first_across_two_partitions(
        orders: list[tuple[int, str, bool]], limit: int, status: str | None, scan_limit: int) -> None:
    halves = [OrderIndex(BufferedTable({}), scan_limit=scan_limit) for _ in range(2)]
    created = {}
    for n, (second, st_, other_half) in enumerate(orders):
        o = order(f'o"{n}', "c:1", 1_000.0 + second, st_)  # ids with a quote: escaped in keys
        halves[other_half].sync(o, None)
        created[o["order_id"]] = (second, st_)
    for noise in range(5):  # another client whose id starts like this one's
        halves[0].sync(order(f"x{noise}", "c:10", 1_020.0), None)
    ids = walk(halves, "c:1", limit, status, {o: s for o, (_, s) in created.items()})
    wanted = [o for o, (_, s) in created.items() if status is None or s == status]
    assert sorted(ids) == sorted(wanted) and len(ids) == len(set(ids))
    times = [created[o][0] for o in ids]
    assert times == sorted(times, reverse=True)


def test_a_new_order_costs_the_same_for_a_client_s_first_and_ten_thousandth_order() -> None:
    table = CountingTable()
    index = OrderIndex(BufferedTable(table))
    costs = []
    for n in range(10_000):
        before = (table.writes, table.bytes)
        o = {**order(f"o{n:05d}", "big", 1_000.0 + n), "due_at": 90_000.0 + n}
        index.sync(o, None)
        if n in (0, 9_999):
            costs.append((table.writes - before[0], table.bytes - before[1]))
    assert costs[0] == costs[1] == (2, costs[0][1])  # one client entry, one due entry, same size
    moved = {**o, "status": "paid"}
    before = table.writes
    index.sync(moved, o)
    assert table.writes == before, "a transition that keeps the due time writes no entry"


def test_a_moved_order_moves_its_entries_and_a_removed_one_leaves_none() -> None:
    table: dict[str, Any] = {}
    index = OrderIndex(BufferedTable(table))
    first = {**order("o1", "c1", 1_000.0), "due_at": 2_000.0}
    index.sync(first, None)
    moved = {**first, "status": "paid", "due_at": 3_000.0, "stuck": {"status": "paid"}}
    index.sync(moved, first)
    assert [e.order_id for e in index.due(0, 2_500.0, 10)] == []
    assert [e.order_id for e in index.due(0, 3_000.0, 10)] == ["o1"]
    assert [e.order_id for e in index.client_page([0], "c1", None, 10, "paid", {"o1": "paid"}.get).entries] \
        == ["o1"]
    assert index.stuck(0, 10) == [("o1", {"status": "paid"})]
    index.remove(moved)
    assert table == {}


class ReadCountingTable(dict):  # type: ignore[type-arg]
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def get(self, key: str, default: Any = None) -> Any:
        self.reads += 1
        return super().get(key, default)


def test_the_first_look_at_an_order_mends_its_entries_and_later_looks_read_nothing() -> None:
    table = ReadCountingTable()
    index = OrderIndex(BufferedTable(table))
    landed = {**order("o1", "c1", 1_000.0), "due_at": 2_000.0}  # its record landed, its entries not
    index.look(landed)
    assert [e.order_id for e in index.due(0, 2_000.0, 10)] == ["o1"]
    assert [e.order_id for e in index.client_page([0], "c1", None, 10, None).entries] == ["o1"]
    reads = table.reads
    index.look(landed)
    assert table.reads == reads, "the entries are known right: nothing read"
    index.forget()  # a rebalance: the next look checks again
    index.look(landed)
    assert table.reads > reads


def test_a_cursor_not_given_by_the_view_is_refused() -> None:
    for cursor in ("", "!!", "bm90LWEta2V5", "MTIzOm8x"):
        with pytest.raises(BadCursor):
            decode_cursor(cursor)
