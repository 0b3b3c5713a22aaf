"""Finished orders leave after ORDERFLOW_FINISHED_RETENTION_S; a late event of one is dead-lettered
`order_closed` (once, even when redone), never taken as a new order, until its marker expires."""

from __future__ import annotations

import asyncio
from typing import Any

from streams.core.deadletters import Source
from tests.fakes import MemoryClosed
from tests.helpers import make_event
from tests.unit.test_processor import SOURCE, due_ids, feed, make_processor, run_due

DAY = 86_400.0


def with_retention(finished_retention_s: float) -> tuple[Any, Any, Any, Any, MemoryClosed]:
    closed = MemoryClosed()
    processor, store, recorder, clock = make_processor(closed=closed,
                                                       finished_retention_s=finished_retention_s)
    return processor, store, recorder, clock, closed


def test_a_finished_order_is_removed_after_the_retention_and_others_stay() -> None:
    processor, store, _recorder, clock, closed = with_retention(30 * DAY)
    feed(processor, [make_event("o1", "created"), make_event("o1", "cancelled"),
                     make_event("o2", "created")])
    finished_at = store.orders["o1"]["finished_at"]
    clock.now = finished_at + 30 * DAY - 1
    run_due(processor)  # their event ids expire (after 3600 s); the orders stay
    assert store.orders["o1"]["seen"] == {} and "o2" in store.orders
    assert due_ids(processor, clock.now) == []
    clock.now = finished_at + 30 * DAY
    assert due_ids(processor, clock.now) == ["o1"]
    run_due(processor)
    assert "o1" not in store.orders
    assert closed.markers["o1"]["status"] == "cancelled" and closed.markers["o1"]["version"] == 2
    assert store.orders["o2"]["status"] == "created"  # not finished: untouched


def test_a_late_event_of_a_removed_order_is_dead_lettered_once_and_never_a_new_order() -> None:
    processor, store, recorder, clock, _closed = with_retention(60.0)
    feed(processor, [make_event("o1", "created"), make_event("o1", "cancelled")])
    clock.now += 61
    run_due(processor)
    late = make_event("o1", "created")
    for _ in range(2):  # the second time: a redo of the same message after a crash
        asyncio.run(processor.on_event(late, Source(SOURCE.topic, 0, 99)))
    assert "o1" not in store.orders
    assert [d["reason"]["kind"] for d in recorder.dead_letters] == ["order_closed"]
    assert "was removed" in recorder.dead_letters[0]["reason"]["message"]


def test_the_marker_expires_after_the_idempotency_retention() -> None:
    processor, store, _, clock, closed = with_retention(60.0)  # idempotency retention: 3600 s
    feed(processor, [make_event("o1", "created"), make_event("o1", "cancelled")])
    clock.now += 61
    run_due(processor)
    assert due_ids(processor, clock.now + 3599) == []
    clock.now += 3600
    assert due_ids(processor, clock.now) == ["o1"]
    run_due(processor)
    assert closed.markers == {}
    feed(processor, [make_event("o1", "created")], first_offset=50)  # the id is free again
    assert store.orders["o1"]["version"] == 1


def test_a_retention_of_zero_keeps_finished_orders_forever() -> None:
    processor, store, _, clock, _ = with_retention(0.0)
    feed(processor, [make_event("o1", "created"), make_event("o1", "cancelled")])
    clock.now += 10_000 * DAY
    run_due(processor)  # only its ids expire
    assert due_ids(processor, clock.now) == []
    assert store.orders["o1"]["status"] == "cancelled"
