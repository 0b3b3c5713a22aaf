"""The order store's client index heals what a crash mid-flush leaves: an order whose record landed
while its client's index record did not is indexed again when its event is redone."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from faust.streams import _current_event

from streams.machine import new_order
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


def _in_event_context(store: OrderStore, order: dict[str, Any]) -> None:
    event = KafkaEvent()
    token = _current_event.set(weakref.ref(event))
    try:
        store.put(order)
        store.add_to_client(order)
        assert store.write_dirty()
    finally:
        _current_event.reset(token)


def test_an_order_missing_from_its_client_index_is_indexed_when_its_event_is_redone() -> None:
    orders, clients = Table(), Table()
    created = make_event("o1", "created", client_id="c1")
    stored = new_order(created, 1.0)
    orders["o1"] = {**stored, "status": "created", "version": 1,  # the record landed; the index did not
                    "seen": {created["event_id"]: 1.0}}
    processor, _, _, _ = make_processor()
    processor.store = OrderStore(orders, "events", clients)
    event = KafkaEvent()
    token = _current_event.set(weakref.ref(event))
    try:
        asyncio.run(processor.handle_event(created, SOURCE))  # the redo: a duplicate now
        asyncio.run(processor.handle_event(make_event("o1", "paid", client_id="c1"), SOURCE))
        assert processor.store.write_dirty()
    finally:
        _current_event.reset(token)
    assert orders["o1"]["status"] == "paid"
    assert clients["c1"] == ["o1"]


def test_a_new_order_joins_its_client_s_list() -> None:
    orders, clients = Table(), Table({"c1": ["o0"]})
    store = OrderStore(orders, "events", clients)
    _in_event_context(store, {**new_order(make_event("o1", "created", client_id="c1"), 1.0),
                              "status": "created", "version": 1})
    assert clients["c1"] == ["o0", "o1"]


class StaleEvent(KafkaEvent):
    """An event fetched before the last rebalance (its job began before it and ended after)."""


def test_a_change_made_by_a_job_from_before_a_rebalance_is_not_seen_by_the_redo() -> None:
    orders = Table({"o1": {**new_order(make_event("o1", "created"), 1.0), "status": "created",
                           "version": 1}})
    store = OrderStore(orders, "events", Table(), is_current=lambda e: not isinstance(e, StaleEvent))
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
