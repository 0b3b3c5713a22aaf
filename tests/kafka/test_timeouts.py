"""Status timeouts on a real cluster: each fires once across a SIGKILL failover, its effect applied
once by the gateway; stuck orders show on the order and in /stats."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

from streams.core.lifecycle import DEFAULT
from streams.tools.publisher import Publisher
from streams.tools.topics import create_topics
from tests.conftest import SettingsFactory
from tests.helpers import make_event
from tests.kafka.conftest import StartGateway
from tests.workers import Worker, wait_for

PAID_AFTER_S, SHIPPED_AFTER_S = 6, 4


def test_a_timeout_fires_once_across_a_sigkill_failover_and_stuck_orders_are_counted(
        settings_factory: SettingsFactory, start_gateway: StartGateway, tmp_path: Path) -> None:
    lifecycle = tmp_path / "lifecycle.json"
    lifecycle.write_text(json.dumps({
        "final": sorted(DEFAULT.final),
        "transitions": [{"from": r.source, "event": r.event, "to": r.target, "effects": list(r.effects)}
                        for r in DEFAULT.transitions],
        "timeouts": [{"status": "paid", "after_s": PAID_AFTER_S, "event": "cancelled"},
                     {"status": "shipped", "after_s": SHIPPED_AFTER_S, "stuck": True}]}))
    gateway = start_gateway()
    settings = settings_factory(ORDERFLOW_PARTITIONS="4")
    create_topics(settings)
    env = {"ORDERFLOW_LIFECYCLE": str(lifecycle), "ORDERFLOW_EFFECTS_URL": gateway.url,
           "ORDERFLOW_SWEEP_INTERVAL_S": "0.2", "ORDERFLOW_SESSION_TIMEOUT_S": "10"}
    a = Worker(settings, tmp_path, "a", **env).start()
    b = Worker(settings, tmp_path, "b", **env).start()
    workers = [a, b]
    try:
        a.wait_ready()
        b.wait_ready()
        unpaid = [f"t{n}" for n in range(30)]  # paid, never shipped: cancelled (and refunded)
        stuck = [f"s{n}" for n in range(10)]  # shipped, never delivered: stuck
        events = [make_event(o, k, client_id=f"c{n % 12}") for n, o in enumerate(unpaid)
                  for k in ("created", "paid")]
        events += [make_event(o, k, client_id=f"c{n % 12}") for n, o in enumerate(stuck)
                   for k in ("created", "paid", "shipped")]
        assert Publisher(settings).publish(events).ok
        wait_for(lambda: all(b.get(f"/orders/{o}")[1].get("version") == 2 for o in unpaid),
                 timeout=60, what="every order paid")
        time.sleep(PAID_AFTER_S - 1)
        a.kill()  # just before the timeouts fire: b takes a's partitions over, mid-timeouts
        a.start()  # and a comes back: partitions move again

        def cancelled() -> bool:
            return all(b.get(f"/orders/{o}")[1].get("status") == "cancelled" for o in unpaid)

        wait_for(cancelled, timeout=120, what="every unpaid order cancelled by its timeout")
        refunds = {f"timeout:{o}:paid:2" for o in unpaid}
        wait_for(lambda: set(gateway.stats()["applied"]) >= refunds, timeout=30,
                 what="every refund applied")
        time.sleep(3)  # anything that would fire twice, fires now
        applied = gateway.stats()["applied"]
        shipments = {e["event_id"] for e in events if e["type"] == "paid"}
        assert set(applied) == refunds | shipments, "no effect but the shipments and the refunds"
        assert set(applied.values()) == {1}
        for order_id in unpaid:
            order = b.get(f"/orders/{order_id}")[1]
            assert order["version"] == 3
            fired = [h for h in order["history"] if h["event_id"].startswith("timeout:")]
            assert [(h["event_id"], h["outcome"]) for h in fired] == \
                [(f"timeout:{order_id}:paid:2", "applied")]

        def stuck_counted() -> dict | None:
            stats = a.get("/stats")[1]
            return stats if stats.get("complete") and stats["orders"]["stuck"] == len(stuck) else None

        stats = wait_for(stuck_counted, timeout=60, what="the stuck orders in /stats")
        assert sorted(stats["orders"]["stuck_examples"]) == sorted(stuck)
        assert Counter(stats["orders"]["by_status"]) == Counter({"cancelled": 30, "shipped": 10})
        for order_id in stuck:
            order = a.get(f"/orders/{order_id}")[1]
            assert order["status"] == "shipped" and order["stuck"]["status"] == "shipped"
        delivered = [make_event(stuck[0], "delivered", client_id="c0")]
        assert Publisher(settings).publish(delivered).ok
        wait_for(lambda: a.get("/stats")[1]["orders"]["stuck"] == len(stuck) - 1, timeout=30,
                 what="a stuck order that moved to leave the count")
        assert b.get(f"/orders/{stuck[0]}")[1]["stuck"] is None
    finally:
        for worker in workers:
            worker.stop()
