"""A cold start (empty state dir) reads the changelogs in bulk and ends with exactly the state
Faust's own per-record recovery gives; later events apply on top of it, and a warm restart after it
has nothing left to read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from faust.stores.rocksdb import Store
from rocksdict import AccessType, Rdict

from streams.tools.publisher import Publisher
from streams.tools.topics import create_topics
from tests.conftest import SettingsFactory
from tests.helpers import uncommitted
from tests.scenario import scenario
from tests.workers import Worker, wait_for

BULK_DONE = "Bulk recovery done"


def views(worker: Worker, orders: list[str]) -> dict[str, Any]:
    found = {}
    for order_id in orders:
        status, body = worker.get(f"/orders/{order_id}")
        assert status == 200, (order_id, status, body)
        found[order_id] = body
    return found


def persisted_offset(state_dir: Path, table: str, partition: int) -> int | None:
    """The changelog offset a worker's store says it holds everything up to (Faust's offset key)."""
    db = Rdict(str(state_dir / "v1" / "tables" / f"{table}-{partition}.db"),
               access_type=AccessType.read_only(), options=None)
    try:
        raw = db.get(Store.offset_key)
        return int(raw) if raw is not None else None
    finally:
        db.close()


def end_offset(bootstrap: str, topic: str, partition: int) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "end-offset"})
    try:
        return int(consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1])
    finally:
        consumer.close()


def counters(worker: Worker) -> dict[str, Any]:
    body = worker.get("/stats")[1]
    return {"events": body["events"], "orders": body["orders"]["by_status"]}


def test_cold_start_in_bulk_gives_the_same_state_as_faust_recovery(
    settings_factory: SettingsFactory, tmp_path: Path
) -> None:
    # two partitions, so each changelog partition holds well over the bulk threshold (1,000 records)
    settings = settings_factory(ORDERFLOW_PARTITIONS="2")
    create_topics(settings)
    traffic = scenario(orders=1500, clients=40, seed=21)
    orders = sorted(traffic.expected)
    publisher = Publisher(settings)
    for event in traffic.events:
        publisher.send(event)
    publisher.flush()

    first = Worker(settings, tmp_path, "first").start().wait_ready()
    try:
        wait_for(lambda: first.get("/stats")[1]["events"]["processed"] >= len(traffic.events),
                 timeout=180, what="every event processed")
        before = views(first, orders)
        stats_before = counters(first)
    finally:
        first.stop()
    assert {o: (v["status"], v["version"]) for o, v in before.items()} == traffic.expected

    bulk = Worker(settings, tmp_path, "bulk").start().wait_ready(timeout=120)  # empty state dir
    faust = Worker(settings, tmp_path, "faust", ORDERFLOW_BULK_RECOVERY="0")
    try:
        assert BULK_DONE in bulk.log_path.read_text()
        assert views(bulk, orders) == before
        assert counters(bulk) == stats_before

        # the recovered state takes new events (new orders) and still drops a duplicate
        extra = scenario(orders=30, clients=5, seed=22, prefix="late")
        for event in [*extra.events, traffic.events[0]]:
            publisher.send(event)
        publisher.flush()
        wait_for(lambda: all(bulk.get(f"/orders/{o}")[0] == 200 for o in extra.expected),
                 timeout=60, what="the new orders applied on the recovered state")
        after = views(bulk, [*orders, *sorted(extra.expected)])
        assert {o: (v["status"], v["version"]) for o, v in after.items() if o in extra.expected} \
            == extra.expected
        assert {o: after[o] for o in orders} == before  # the duplicate changed nothing

        # every changelog record written is remembered as persisted in its partition's store (what a
        # warm restart resumes reading from): once the events are committed, nothing past it
        wait_for(lambda: not any(uncommitted(settings.bootstrap, settings.app_id,
                                             settings.events_topic).values()),
                 timeout=60, what="the events to be committed")
        bulk.stop()
        for partition in range(settings.partitions):
            topic = f"{settings.app_id}-orders-changelog"
            end = end_offset(settings.bootstrap, topic, partition)
            assert persisted_offset(bulk.state_dir, "orders", partition) == end - 1, (topic, partition)

        # a warm restart after the bulk recovery finds its store up to date: nothing read in bulk
        logged = len(bulk.log_path.read_text().splitlines())
        bulk.start().wait_ready()
        assert BULK_DONE not in "\n".join(bulk.log_path.read_text().splitlines()[logged:])
        assert views(bulk, orders) == before

        # Faust's own recovery of the same changelogs gives the same state
        bulk.stop()
        faust.start().wait_ready(timeout=180)
        assert BULK_DONE not in faust.log_path.read_text()
        assert views(faust, [*orders, *sorted(extra.expected)]) == after
    finally:
        bulk.stop()
        faust.stop()
