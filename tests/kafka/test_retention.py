"""Finished orders leave (issue 12): on a real worker, a finished order is removed after the
retention with a tombstone on its changelog topic; a late event of it is dead-lettered
`order_closed`; other orders are untouched."""

from __future__ import annotations

from streams.tools.publisher import Publisher
from tests.conftest import SettingsFactory
from tests.helpers import consume_all, make_event, values
from tests.workers import Worker, wait_for


def order_of(worker: Worker, order_id: str) -> tuple[int, dict]:
    return worker.get(f"/orders/{order_id}")


def test_a_finished_order_leaves_with_a_tombstone_and_its_late_events_are_dead_lettered(
    settings_factory: SettingsFactory, start_worker
) -> None:
    settings = settings_factory(ORDERFLOW_PARTITIONS="2")
    worker = start_worker(settings, ORDERFLOW_FINISHED_RETENTION_S="3", ORDERFLOW_SWEEP_INTERVAL_S="0.5")
    publisher = Publisher(settings)
    assert publisher.publish([make_event("done", "created", client_id="c1"),
                              make_event("done", "cancelled", client_id="c1"),
                              make_event("open", "created", client_id="c1")]).ok
    assert wait_for(lambda: order_of(worker, "done")[0] == 200, timeout=30, what="the order")
    wait_for(lambda: order_of(worker, "done")[0] == 404, timeout=30, interval=0.5,
             what="the finished order to be removed after its retention")
    assert order_of(worker, "open")[1]["status"] == "created"
    clients = worker.get("/clients/c1/orders")[1]
    assert [o["order_id"] for o in clients["orders"]] == ["open"]
    stats = worker.get("/stats")[1]
    assert stats["orders"]["total"] == 1 and stats["orders"]["by_status"] == {"created": 1}

    changelog = f"{settings.app_id}-orders-changelog"
    records = consume_all(settings.bootstrap, changelog, 10_000, timeout_s=5)
    tombstones = [r.key() for r in records if r.value() is None]
    assert any(b"done" in key for key in tombstones), tombstones

    late = make_event("done", "paid", client_id="c1")
    assert publisher.publish([late]).ok
    letters = values(consume_all(settings.bootstrap, settings.dlq_topic, 1))
    assert [(x["reason"]["kind"], x["event"]["event_id"]) for x in letters] == [
        ("order_closed", late["event_id"])]
    assert order_of(worker, "done")[0] == 404  # never taken as a new order
