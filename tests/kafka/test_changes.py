"""The change feed (`orders.changes`): after a SIGKILL mid-stream, every applied transition of every
order is on it, in the order's order, with the order as the view shows it (repeats allowed, no gap
in `version`); `orderflow changes tail --order` prints one order's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from streams.changes import read_changes
from streams.tools.cli import main
from streams.tools.publisher import Publisher
from streams.tools.topics import create_topics
from tests.conftest import SettingsFactory, settings_env
from tests.scenario import scenario
from tests.workers import Worker, wait_for

FAST_FAILOVER = {"ORDERFLOW_SESSION_TIMEOUT_S": "8", "ORDERFLOW_HEARTBEAT_S": "1"}


def test_every_applied_transition_is_on_the_feed_across_a_sigkill(
    settings_factory: SettingsFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = settings_factory(ORDERFLOW_PARTITIONS="4")
    create_topics(settings)
    a = Worker(settings, tmp_path, "a", **FAST_FAILOVER).start()
    b = Worker(settings, tmp_path, "b", **FAST_FAILOVER).start()
    traffic = scenario(orders=150, clients=16, seed=31)
    publisher = Publisher(settings)
    try:
        a.wait_ready()
        b.wait_ready()
        half = len(traffic.events) // 2
        assert publisher.publish(traffic.events[:half]).ok
        def processed_by_b() -> int:
            share = b.get("/stats?local=1")[1]
            return sum(p["counts"].get("events", 0) for p in share.get("partitions", {}).values())

        wait_for(lambda: processed_by_b() > 20, timeout=60,
                 what="the worker to be killed to have processed events")
        b.kill()  # SIGKILL: whatever it had sent and not committed is redone by the survivor
        assert publisher.publish(traffic.events[half:]).ok

        def view(order_id: str) -> dict[str, Any] | None:
            status, body = a.get(f"/orders/{order_id}")
            return body if status == 200 else None

        wait_for(lambda: all((o := view(oid)) is not None and (o["status"], o["version"]) == want
                             for oid, want in traffic.expected.items()),
                 timeout=120, what="every order on the survivor to match the model")
        views = {oid: view(oid) for oid in traffic.expected}
    finally:
        a.stop()
        b.stop()

    by_order: dict[str, list[dict[str, Any]]] = {}
    for record in read_changes(settings):
        by_order.setdefault(record["order_id"], []).append(record)
    for order_id, order in views.items():
        assert order is not None
        records = by_order.get(order_id, [])
        # in the order's order: a record never skips ahead; a repeat goes back to a version seen
        highest = 0
        for record in records:
            assert record["version"] <= highest + 1, (order_id, [r["version"] for r in records])
            highest = max(highest, record["version"])
        firsts = {r["version"]: r for r in reversed(records)}
        assert sorted(firsts) == list(range(1, order["version"] + 1)), order_id  # no gap, none missing
        applied = [h for h in order["history"] if h["outcome"] == "applied"]
        for version, entry in enumerate(applied, start=1):
            record = firsts[version]
            assert (record["event_id"], record["type"], record["from"], record["to"], record["at"]) == \
                (entry["event_id"], entry["type"], entry["from"], entry["to"], entry["at"])
            assert record["client_id"] == order["client_id"]
            assert record["order"]["version"] == version and record["order"]["status"] == entry["to"]
        last = firsts[order["version"]]["order"]
        assert {k: last[k] for k in ("order_id", "client_id", "status", "version", "created_at")} == \
            {k: order[k] for k in ("order_id", "client_id", "status", "version", "created_at")}
    assert set(by_order) <= set(views)  # nothing on the feed for orders never applied

    # the CLI prints one order's changes, repeats dropped
    some = max(views, key=lambda oid: views[oid]["version"])  # type: ignore[index]
    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    assert main(["changes", "tail", "--order", some]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["version"] for r in printed] == list(range(1, views[some]["version"] + 1))  # type: ignore[index]
    assert {r["order_id"] for r in printed} == {some}
