"""The order processor as a real `faust worker` process on the real broker."""

from __future__ import annotations

import json
import time

from streams.tools.publisher import Publisher
from tests.conftest import SettingsFactory
from tests.effects_server import effects_server
from tests.helpers import consume_all, make_event, values
from tests.scenario import scenario
from tests.workers import Worker, wait_for


def order_of(worker: Worker, order_id: str) -> dict | None:
    status, body = worker.get(f"/orders/{order_id}/")
    return body if status == 200 else None


def test_lifecycles_end_as_the_model_predicts(settings_factory: SettingsFactory, start_worker) -> None:
    settings = settings_factory()
    worker = start_worker(settings)
    traffic = scenario(orders=60, clients=7, seed=1)
    assert Publisher(settings).publish(traffic.events).ok

    def all_done() -> bool:
        return all((o := order_of(worker, oid)) is not None and (o["status"], o["version"]) == want
                   for oid, want in traffic.expected.items())

    wait_for(all_done, timeout=60, what="every order to reach its expected status and version")
    for order_id in traffic.expected:
        order = order_of(worker, order_id)
        assert order is not None and order["pending"] == {"retry": None, "parked": 0}
        applied = [h["event_id"] for h in order["history"] if h["outcome"] == "applied"]
        assert len(applied) == len(set(applied)) == order["version"]
    letters = values(consume_all(settings.bootstrap, settings.dlq_topic, len(traffic.impossible)))
    assert sorted(d["event"]["event_id"] for d in letters) == sorted(traffic.impossible)
    assert {d["reason"]["kind"] for d in letters} == {"rejected"}
    # the worker ran the compiled hot path the install built, and said so (streams/compiled.py)
    assert "core compiled (mypyc)" in worker.log_path.read_text(errors="replace")


def test_bad_messages_land_in_the_dead_letters_with_their_reason(
    settings_factory: SettingsFactory, start_worker
) -> None:
    settings = settings_factory()
    worker = start_worker(settings)
    publisher = Publisher(settings)
    missing = make_event("o-missing", "created")
    del missing["occurred_at"]
    wrong_key = make_event("o-key", "created", client_id="alice")
    publisher.send_raw("c1", b"{this is not json")
    publisher.send_raw("c1", Publisher.encode(missing))
    publisher.send_raw("mallory", Publisher.encode(wrong_key))
    publisher.send(make_event("o-fine", "created", client_id="c1"))
    assert publisher.flush().ok

    letters = values(consume_all(settings.bootstrap, settings.dlq_topic, 3))
    reasons = sorted((d["reason"]["kind"], d["reason"]["message"].split(":")[0]) for d in letters)
    assert [r[0] for r in reasons] == ["invalid_event"] * 3
    messages = " | ".join(d["reason"]["message"] for d in letters)
    assert "not valid JSON" in messages
    assert "field `occurred_at` is missing" in messages
    assert "message key 'mallory' differs from client_id 'alice'" in messages
    raw = [d["event"] for d in letters if isinstance(d["event"], str)]
    assert raw == ["{this is not json"]
    for letter in letters:
        assert letter["source"]["topic"] == settings.events_topic
        assert {"partition", "offset"} <= letter["source"].keys()
    # the worker kept running
    assert wait_for(lambda: order_of(worker, "o-fine"), timeout=30, what="o-fine")["status"] == "created"


def test_early_event_is_parked_then_applied_and_a_park_timeout_dead_letters(
    settings_factory: SettingsFactory, start_worker
) -> None:
    settings = settings_factory()
    worker = start_worker(settings, ORDERFLOW_PARK_TIMEOUT_S="3", ORDERFLOW_SWEEP_INTERVAL_S="0.5")
    publisher = Publisher(settings)
    stuck = make_event("o-stuck", "delivered")
    publisher.publish([make_event("o-early", "created"), make_event("o-early", "shipped"),
                       make_event("o-stuck", "created"), stuck])
    parked = wait_for(lambda: (o := order_of(worker, "o-early")) and o["pending"]["parked"] == 1 and o,
                      timeout=30, what="the early shipped event to be parked")
    assert parked["status"] == "created"
    publisher.publish([make_event("o-early", "paid")])
    done = wait_for(lambda: (o := order_of(worker, "o-early")) and o["status"] == "shipped" and o,
                    timeout=30, what="the parked event to be applied")
    assert done["version"] == 3 and done["pending"]["parked"] == 0

    letters = values(consume_all(settings.bootstrap, settings.dlq_topic, 1, timeout_s=30))
    assert letters and letters[0]["reason"]["kind"] == "park_timeout"
    assert letters[0]["event"] == stuck
    order = order_of(worker, "o-stuck")
    assert order is not None and order["pending"]["parked"] == 0
    assert order["history"][-1]["outcome"] == "expired"


def test_the_same_event_three_times_is_applied_once_and_a_resubmission_after_failure_is_processed(
    settings_factory: SettingsFactory, start_worker
) -> None:
    # the effects service refuses the first call of each key (400), then accepts
    with effects_server(lambda path, body, n: (400 if n == 1 else 201, 0.0)) as (url, calls):
        settings = settings_factory()
        worker = start_worker(settings, ORDERFLOW_EFFECTS_URL=url)
        publisher = Publisher(settings)
        created = make_event("o1", "created")
        publisher.publish([created, created, created])
        order = wait_for(lambda: order_of(worker, "o1"), timeout=30, what="o1")
        paid = make_event("o1", "paid")
        publisher.publish([paid])
        failed = wait_for(lambda: (o := order_of(worker, "o1")) and o["failure"] and o,
                          timeout=30, what="the refused payment to fail")
        assert failed["status"] == "created" and failed["version"] == 1
        assert failed["history"][-1]["outcome"] == "failed"
        letters = values(consume_all(settings.bootstrap, settings.dlq_topic, 1))
        assert letters[0]["reason"]["kind"] == "effect_failed"
        assert "HTTP 400" in letters[0]["reason"]["message"]

        publisher.publish([paid])  # the same event, resubmitted once the cause is fixed
        order = wait_for(lambda: (o := order_of(worker, "o1")) and o["status"] == "paid" and o,
                         timeout=30, what="the resubmitted payment to apply")
        assert order["version"] == 2
        assert calls[paid["event_id"]] == 2


def test_a_slow_order_does_not_delay_other_orders_of_its_partition(
    settings_factory: SettingsFactory, start_worker
) -> None:
    def script(path: str, body: dict, n: int) -> tuple[int, float]:
        return 201, (8.0 if body["order_id"] == "slow" else 0.0)

    with effects_server(script) as (url, _calls):
        settings = settings_factory()
        worker = start_worker(settings, ORDERFLOW_EFFECTS_URL=url)
        publisher = Publisher(settings)
        # one client: every event below is in the same partition, the slow order's first
        publisher.publish([make_event("slow", "created"), make_event("slow", "paid")])
        time.sleep(0.5)
        started = time.monotonic()
        others = [f"fast{i}" for i in range(40)]  # any ids: a free lane takes each
        publisher.publish([e for oid in others for e in
                           (make_event(oid, "created"), make_event(oid, "paid"))])
        wait_for(lambda: all((o := order_of(worker, oid)) and o["status"] == "paid" for oid in others),
                 timeout=30, interval=0.2, what="the fast orders")
        elapsed = time.monotonic() - started
        slow = order_of(worker, "slow")
        assert elapsed < 6.0, f"fast orders took {elapsed:.1f}s behind an 8s order"
        assert slow is not None and slow["status"] == "created", "the slow effect is still running"
        print(f"\nfast orders of the slow order's partition done in {elapsed:.2f}s")
        wait_for(lambda: (o := order_of(worker, "slow")) and o["status"] == "paid",
                 timeout=30, what="the slow order")
        assert json.dumps(order_of(worker, "slow"))
