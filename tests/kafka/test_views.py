"""The contract's views from a two-worker cluster: the worker that does not hold the data answers
like the one that does; cluster-wide stats; metrics; the dashboard in a real headless Chromium."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.parse
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Producer

from streams.tools.publisher import Publisher
from streams.tools.topics import create_topics
from tests.conftest import SettingsFactory
from tests.helpers import make_event
from tests.scenario import scenario
from tests.workers import Worker, wait_for

TICKS = {"ORDERFLOW_SWEEP_INTERVAL_S": "0.3"}


@pytest.fixture
def cluster(settings_factory: SettingsFactory, tmp_path: Path):
    """Two workers on 4 partitions, both ready and both owning partitions, with /ready observed."""
    settings = settings_factory(ORDERFLOW_PARTITIONS="4")
    create_topics(settings)
    a = Worker(settings, tmp_path, "a", **TICKS).start()
    b = Worker(settings, tmp_path, "b", **TICKS).start()
    try:
        readiness: list[int] = []

        def a_ready() -> bool:
            try:
                readiness.append(a.get("/ready", timeout=2)[0])
            except OSError:
                return False
            return readiness[-1] == 200

        wait_for(a_ready, timeout=90, interval=0.1, what="worker a to be ready")
        b.wait_ready()
        wait_for(lambda: all(_local_partitions(w) for w in (a, b)), timeout=60,
                 what="both workers to own partitions")
        yield settings, a, b, readiness
    finally:
        a.stop()
        b.stop()


def _local_partitions(worker: Worker) -> list[int]:
    status, body = worker.get("/stats?local=1")
    return [int(p) for p in body["partitions"]] if status == 200 else []


def test_every_view_answers_alike_from_the_worker_that_does_not_hold_the_data(cluster) -> None:
    settings, a, b, readiness = cluster
    assert readiness[0] == 503 and readiness[-1] == 200, readiness
    assert 200 not in readiness[:-1], "ready only once, at the end of recovery"

    traffic = scenario(orders=48, clients=8, seed=11)
    assert Publisher(settings).publish(traffic.events).ok
    # an outside producer with librdkafka's default partitioner (CRC32, not murmur2)
    crc = Producer({"bootstrap.servers": settings.bootstrap})
    crc_orders = {f"crc{n}": f"crc-client{n}" for n in range(12)}
    for order_id, client_id in crc_orders.items():
        crc.produce(settings.events_topic, key=client_id,
                    value=json.dumps(make_event(order_id, "created", client_id=client_id)).encode())
    assert crc.flush(30) == 0

    expected = {**traffic.expected, **{o: ("created", 1) for o in crc_orders}}
    clients = {**traffic.clients, **crc_orders}

    def all_done() -> bool:
        return all((r := b.get(f"/orders/{oid}"))[0] == 200 and (r[1]["status"], r[1]["version"]) == want
                   for oid, want in expected.items())

    wait_for(all_done, timeout=90, what="every order, asked of worker b")
    owners: Counter[str] = Counter()
    for order_id in expected:
        local = {w.name: w.get(f"/orders/{order_id}?local=1")[0] for w in (a, b)}
        assert sorted(local.values()) == [200, 404], (order_id, local)
        owner, other = (a, b) if local["a"] == 200 else (b, a)
        owners[owner.name] += 1
        assert other.get(f"/orders/{order_id}") == owner.get(f"/orders/{order_id}")
    assert owners["a"] and owners["b"], "the orders must be spread over both workers"

    for client_id in set(clients.values()):
        answers = [w.get(f"/clients/{client_id}/orders") for w in (a, b)]
        assert answers[0] == answers[1] and answers[0][0] == 200
        assert {o["order_id"] for o in answers[0][1]["orders"]} == \
            {o for o, c in clients.items() if c == client_id}

    valid_events = len(traffic.events) + len(crc_orders)

    def settled() -> dict | None:
        stats = [w.get("/stats")[1] for w in (a, b)]
        whole = stats[0]
        ok = (stats[0] == stats[1] and whole["complete"] and whole["events"]["processed"] == valid_events)
        return whole if ok else None

    stats = wait_for(settled, timeout=30, what="both workers to report the same complete stats")
    want = Counter(status for status, _ in expected.values())
    assert stats["orders"]["by_status"] == dict(want)
    assert stats["orders"]["total"] == len(expected)
    assert stats["events"]["duplicates_dropped"] == traffic.duplicates
    assert stats["dead_letters"]["total"] == len(traffic.impossible)
    assert stats["dead_letters"]["by_kind"] == {"rejected": len(traffic.impossible)}
    assert stats["partitions"] == {"reported": 4, "expected": 4}
    assert sorted(p for ps in stats["workers"].values() for p in ps) == [0, 1, 2, 3]
    assert sum(len(_local_partitions(w)) for w in (a, b)) == 4

    status, metrics = b.get("/metrics")
    assert status == 200
    applied = sum(v for _, v in expected.values())
    assert re.search(r"^orderflow_applied_total (\d+)", metrics, re.M)
    local_applied = sum(float(re.search(r"^orderflow_applied_total (\S+)", w.get("/metrics")[1], re.M)[1])
                        for w in (a, b))
    assert local_applied == applied
    assert 'orderflow_events_total{outcome="duplicate",type=' in metrics
    assert "orderflow_processing_latency_seconds_bucket" in metrics
    assert "orderflow_lane_queue_depth" in metrics and "orderflow_consumer_lag{" in metrics


def test_bad_ids_get_a_json_4xx_never_a_500(cluster) -> None:
    _settings, a, _b, _ = cluster
    for path in ("/orders/" + "x" * 200, "/orders/bad$id", "/orders/" + urllib.parse.quote("a b"),
                 "/orders/a%2Fb", "/clients/" + "y" * 129 + "/orders", "/clients/%00/orders",
                 "/orders/nobody-has-this"):
        status, body = a.get(path)
        assert 400 <= status < 500, (path, status)
        assert isinstance(body, dict) and "error" in body, (path, body)


def test_the_dashboard_shows_live_numbers_in_chromium(cluster, chromium: str, tmp_path: Path) -> None:
    settings, a, b, _ = cluster
    traffic = scenario(orders=30, clients=5, seed=4)
    assert Publisher(settings).publish(traffic.events).ok
    stats = wait_for(lambda: (s := a.get("/stats")[1])["orders"]["total"] == 30 and s["complete"]
                     and s["events"]["processed"] == len(traffic.events) and s,
                     timeout=60, what="stats to count every order")
    time.sleep(1)
    common = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--hide-scrollbars", "--virtual-time-budget=4000", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*common, "--dump-dom", f"{b.url}/"], capture_output=True, text=True,
                         timeout=90).stdout
    shown = {m[0]: m[1] for m in re.findall(r'id="([a-z-]+)">([^<]*)<', dom)}
    assert shown["orders-total"] == "30"
    assert shown["events-processed"] == str(stats["events"]["processed"])
    assert shown["dead-letters"] == str(len(traffic.impossible))
    assert shown["duplicates"] == str(traffic.duplicates)
    for status, count in stats["orders"]["by_status"].items():
        assert re.search(rf'data-status="{status}"><div class="n">{count}</div>', dom), status
    assert "all partitions reporting" in dom
    assert dom.count('data-status="') >= len(stats["orders"]["by_status"]) + 6  # cards + lifecycle boxes
    for worker in (a, b):
        assert worker.url in dom, "which worker holds which partitions"
    assert "rejected" in dom, "the recent dead letters"
    assert len(re.findall(r'<canvas', dom)) >= 2, "the two live charts (uPlot draws on a canvas)"
    assert "events/s" in dom and "consumer lag" in dom
    lag = a.get("/stats")[1]["lag"]
    assert len(lag["partitions"]) == 2 * settings.partitions  # the events and retry topics
    assert dom.count("lagbar") >= len(lag["partitions"]), "lag per partition"

    # an order looked up by id (?order= fills the form and looks it up): its whole timeline
    looked = next(o for o in sorted(traffic.expected) if len(a.get(f"/orders/{o}")[1]["history"]) >= 3)
    order = a.get(f"/orders/{looked}")[1]
    page = f"{b.url}/?order={urllib.parse.quote(looked)}"
    dom = subprocess.run([*common, "--dump-dom", page], capture_output=True, text=True, timeout=90).stdout
    assert f'data-order="{looked}"' in dom
    timeline = dom.split('id="timeline"', 1)[1].split("</ol>", 1)[0]
    assert timeline.count("<li") == len(order["history"]) + (1 if order["pending"]["parked"] else 0) \
        + (1 if order["pending"]["retry"] else 0) + (1 if order["failure"] else 0) \
        + (1 if order["stuck"] else 0)
    for entry in order["history"]:
        assert entry["event_id"] in timeline and f"{entry['type']} {entry['outcome']}" in timeline
    missing = subprocess.run([*common, "--dump-dom", f"{b.url}/?order=no-such-order"], capture_output=True,
                             text=True, timeout=90).stdout
    assert "no-such-order: " in missing

    screenshot = tmp_path / "dashboard.png"
    subprocess.run([*common, "--window-size=1280,1900", f"--screenshot={screenshot}", page],
                   capture_output=True, timeout=90, check=True)
    assert screenshot.stat().st_size > 20_000
    print(f"\ndashboard screenshot: {screenshot}")


def _walk(workers: list[Worker], client_id: str, limit: int, status: str | None = None) -> list[dict]:
    """Every page of the client's orders, asking the workers in turn; the orders in page order."""
    orders: list[dict] = []
    cursor = None
    for turn in range(1000):
        query = {"limit": str(limit), **({"status": status} if status else {}),
                 **({"after": cursor} if cursor else {})}
        code, body = workers[turn % len(workers)].get(
            f"/clients/{client_id}/orders?{urllib.parse.urlencode(query)}")
        assert code == 200, body
        assert len(body["orders"]) <= limit
        orders.extend(body["orders"])
        cursor = body["next"]
        if cursor is None:
            return orders
    raise AssertionError("the cursor never ended")


def test_a_cursor_walks_every_order_of_a_client_once_newest_first_from_either_worker(cluster) -> None:
    settings, a, b, _ = cluster
    # One client, its orders in two partitions: half published with murmur2, half with CRC32.
    client = "big client/1"
    murmur = [make_event(f"m{n:02d}", "created", client_id=client) for n in range(23)]
    crc_events = [make_event(f"c{n:02d}", "created", client_id=client) for n in range(22)]
    paid = [make_event(f"m{n:02d}", "paid", client_id=client) for n in range(0, 23, 3)]
    # orders that only have a parked event (never created) are not shown, but take their place
    parked_only = [make_event(f"p{n}", "shipped", client_id=client) for n in range(4)]
    assert Publisher(settings).publish(murmur[:10] + parked_only + murmur[10:] + paid).ok
    crc = Producer({"bootstrap.servers": settings.bootstrap})
    for event in crc_events:
        crc.produce(settings.events_topic, key=client, value=json.dumps(event).encode())
    assert crc.flush(30) == 0
    every = {e["order_id"] for e in murmur + crc_events}
    quoted = urllib.parse.quote(client, safe="")
    wait_for(lambda: len(_walk([a], quoted, 1000)) == len(every)
             and sum(o["status"] == "paid" for o in _walk([b], quoted, 1000)) == len(paid),
             timeout=60, what="every order of the client")

    for workers in ([a, b], [b, a]):
        walked = _walk(workers, quoted, 7)
        ids = [o["order_id"] for o in walked]
        assert sorted(ids) == sorted(every) and len(ids) == len(set(ids)), "each order exactly once"
        created = [o["created_at"] for o in walked]
        assert created == sorted(created, reverse=True), "newest first"
        assert walked == _walk([b, a], quoted, 1000), "the same answer whatever the page size"
    only_paid = _walk([b, a], quoted, 2, status="paid")
    assert sorted(o["order_id"] for o in only_paid) == sorted(e["order_id"] for e in paid)
    assert a.get(f"/clients/{quoted}/orders")[1]["orders"] == _walk([a], quoted, 1000)[:50]
    for query in ("limit=0", "limit=1001", "limit=x", "after=not-a-cursor", "status=nope"):
        code, body = b.get(f"/clients/{quoted}/orders?{query}")
        assert code == 400 and "error" in body, (query, body)

    # the same from a terminal, against either worker: orderflow orders list / get
    for worker in (a, b):
        listed = _cli(["orders", "list", "--client", client, "--json", "--url", worker.url])
        assert [json.loads(line) for line in listed] == walked
        paid_lines = _cli(["orders", "list", "--client", client, "--status", "paid", "--url", worker.url])
        assert sorted(line.split()[0] for line in paid_lines) == sorted(e["order_id"] for e in paid)
        assert all(line.split()[1] == "paid" for line in paid_lines)
        shown = json.loads("\n".join(_cli(["orders", "get", "m03", "--url", worker.url])))
        assert shown == a.get("/orders/m03")[1] and shown["status"] == "paid"
    with pytest.raises(AssertionError, match="HTTP 404"):
        _cli(["orders", "get", "no-such-order", "--url", b.url])


def _cli(argv: list[str]) -> list[str]:
    """Run `orderflow ARGV` as a user would; its output lines (fails with its one-line error)."""
    run = subprocess.run([sys.executable, "-m", "streams.tools.cli", *argv], capture_output=True, text=True,
                         timeout=60, cwd=Path(__file__).resolve().parents[2])
    if run.returncode != 0:
        raise AssertionError(run.stderr.strip())
    return run.stdout.splitlines()
