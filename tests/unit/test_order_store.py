"""The order store and its index heal what a crash mid-flush leaves: an order whose record landed
while its index entries did not is indexed again when its event is redone; and a job from before a
rebalance changes nothing the redo sees."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from faust.streams import _current_event

from streams.core.machine import new_order
from streams.engine.tables import BufferedTable
from streams.index import OrderIndex
from streams.state import OrderStore
from tests.helpers import make_event
from tests.unit.test_processor import SOURCE, make_processor


class Table(dict):  # type: ignore[type-arg]
    """Faust's table as a dict (the store writes with `table[key] = value`)."""

    data: Any = None


class Message:
    partition = 0


class KafkaEvent:
    message = Message()


def test_an_order_missing_from_its_client_index_is_indexed_when_its_event_is_redone() -> None:
    orders, entries = Table(), Table()
    created = make_event("o1", "created", client_id="c1")
    stored = new_order(created, 1.0)
    orders["o1"] = {**stored, "status": "created", "version": 1,  # the record landed; the index did not
                    "seen": {created["event_id"]: 1.0}}
    processor, _, _, _ = make_processor()
    processor.store = OrderStore(orders, "events")
    processor.index = OrderIndex(BufferedTable(entries))
    event = KafkaEvent()
    token = _current_event.set(weakref.ref(event))
    try:
        asyncio.run(processor.handle_event(created, SOURCE))  # the redo: a duplicate now
        assert processor.store.write_dirty() and processor.index.entries.write()  # type: ignore[attr-defined]
    finally:
        _current_event.reset(token)
    page = processor.index.client_page([0], "c1", None, 10, None)  # type: ignore[attr-defined]
    assert [e.order_id for e in page.entries] == ["o1"]


class StaleEvent(KafkaEvent):
    """An event fetched before the last rebalance (its job began before it and ended after)."""


def test_a_change_made_by_a_job_from_before_a_rebalance_is_not_seen_by_the_redo() -> None:
    orders = Table({"o1": {**new_order(make_event("o1", "created"), 1.0), "status": "created",
                           "version": 1}})
    store = OrderStore(orders, "events", is_current=lambda e: not isinstance(e, StaleEvent))
    stale = StaleEvent()
    token = _current_event.set(weakref.ref(stale))
    try:
        store.put({**orders["o1"], "status": "cancelled", "version": 2,
                   "letters": {"x": 1.0}})  # its letter was dropped as stale: never sent
    finally:
        _current_event.reset(token)
    current = KafkaEvent()
    token = _current_event.set(weakref.ref(current))
    try:
        order = store.get("o1")  # the redo, in the new generation
    finally:
        _current_event.reset(token)
    assert order is not None and order["version"] == 1 and "x" not in order.get("letters", {})
    assert store.write_dirty() and orders["o1"]["version"] == 1


def test_orders_being_written_a_slice_at_a_time_stay_readable_and_changes_meanwhile_wait() -> None:
    orders = Table()
    store = OrderStore(orders, "events", cache_size=10)  # most of them evicted from the cache
    event = KafkaEvent()
    token = _current_event.set(weakref.ref(event))
    try:
        for n in range(450):
            store.put({**new_order(make_event(f"o{n}", "created"), 1.0), "status": "created", "version": 1})
        steps = store.write_steps()
        next(steps)  # one slice written, the loop turns
        assert "o449" not in orders and store.get("o449")["version"] == 1  # type: ignore[index]
        store.put({**store.get("o0"), "version": 2})  # type: ignore[dict-item]  # a lane, meanwhile
        try:
            while True:
                next(steps)
        except StopIteration as done:
            assert done.value is True  # everything of this batch written
        assert len(orders) == 450 and orders["o0"]["version"] == 1
        assert store.get("o0")["version"] == 2  # type: ignore[index]  # written with the next flush
        assert store.write_dirty() and orders["o0"]["version"] == 2
    finally:
        _current_event.reset(token)


def test_a_cached_order_reads_back_as_written_and_a_readers_change_stays_its_own() -> None:
    orders = Table()
    store = OrderStore(orders, "events")
    event = KafkaEvent()
    token = _current_event.set(weakref.ref(event))
    try:
        created = make_event("o1", "created")
        order = {**new_order(created, 1.0), "status": "created", "version": 1,
                 "history": [{"event_id": created["event_id"], "to": "created"}],
                 "seen": {created["event_id"]: 1.0}}
        store.put(order)
        assert store.write_dirty()
        read = store.get("o1")  # from the cache (kept encoded once written)
        assert read == orders["o1"] == order
        read["history"].append({"event_id": "x", "to": "paid"})  # a careless reader
        read["status"] = "paid"
        again = store.get("o1")
        assert again == order and again["status"] == "created" and len(again["history"]) == 1
    finally:
        _current_event.reset(token)
