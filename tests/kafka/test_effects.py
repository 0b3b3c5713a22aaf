"""Effects over HTTP against a real `orderflow gateway` process: retries, ordering, dead letters, replay."""

from __future__ import annotations

import itertools
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime
from typing import Any

from streams.config import Settings
from streams.tools.publisher import Publisher
from tests.conftest import SettingsFactory, settings_env
from tests.gateway import GatewayProcess
from tests.helpers import consume_all, make_event, uncommitted, values
from tests.kafka.conftest import StartGateway, StartWorker
from tests.scenario import scenario
from tests.workers import ROOT, Worker, wait_for

FAST_RETRIES = {"ORDERFLOW_RETRY_BASE_S": "0.1", "ORDERFLOW_RETRY_CAP_S": "1",
                "ORDERFLOW_SWEEP_INTERVAL_S": "0.2"}


def order_of(worker: Worker, order_id: str) -> dict[str, Any] | None:
    status, body = worker.get(f"/orders/{order_id}/")
    return body if status == 200 else None


def reaches(worker: Worker, order_id: str, status: str, timeout: float = 60) -> dict[str, Any]:
    return wait_for(lambda: (o := order_of(worker, order_id)) and o["status"] == status and o,
                    timeout=timeout, interval=0.2, what=f"order {order_id} to be {status}")


def orderflow(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams.tools.cli", *args], cwd=ROOT, text=True,
                          capture_output=True, env={**os.environ, **settings_env(settings)}, timeout=60)


def test_gateway_failing_30_percent_still_ends_every_order_right_and_applies_each_effect_once(
    settings_factory: SettingsFactory, start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    # 30% answered 503; 10% applied but answered too late (the worker times out and retries)
    gateway = start_gateway("--error-rate", "0.3", "--timeout-rate", "0.1", "--hang-s", "3",
                            "--seed", "5")
    settings = settings_factory()
    worker = start_worker(settings, ORDERFLOW_EFFECTS_URL=gateway.url, ORDERFLOW_EFFECT_TIMEOUT_S="1",
                          ORDERFLOW_RETRY_MAX_ATTEMPTS="40", **FAST_RETRIES)
    traffic = scenario(orders=40, clients=8, seed=3)
    assert Publisher(settings).publish(traffic.events).ok

    def all_done() -> bool:
        return all((o := order_of(worker, oid)) is not None and (o["status"], o["version"]) == want
                   for oid, want in traffic.expected.items())

    wait_for(all_done, timeout=120, what="every order to reach the status the model predicts")
    paid_orders = {e["order_id"] for e in traffic.events if e["type"] == "paid"}
    effect_keys = {e["event_id"] for e in traffic.events
                   if e["event_id"] not in traffic.impossible
                   and (e["type"] == "paid" or (e["type"] == "cancelled" and e["order_id"] in paid_orders))}
    stats = gateway.stats()
    assert set(stats["applied"]) == effect_keys, "every effect applied, and nothing else"
    assert set(stats["applied"].values()) == {1}, "no effect applied twice"
    retried = {k for k in effect_keys if stats["calls"][k] > 1}
    assert retried, "with 40% of calls failing some effects must have been called more than once"
    assert stats["statuses"].get("503", 0) > 0
    print(f"\n{len(effect_keys)} effects applied once each; {len(retried)} needed more than one call; "
          f"{stats['calls_total']} calls in all; statuses {stats['statuses']}")
    assert values(consume_all(settings.bootstrap, settings.dlq_topic, len(traffic.impossible)))


def test_400_and_exhausted_retries_dead_letter_and_replay_after_heal_completes_the_order(
    settings_factory: SettingsFactory, start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    gateway = start_gateway()
    gateway.script("o-exhaust", status=503, times=1000)
    settings = settings_factory()
    worker = start_worker(settings, ORDERFLOW_EFFECTS_URL=gateway.url, ORDERFLOW_RETRY_MAX_ATTEMPTS="3",
                          **FAST_RETRIES)
    bad = make_event("o-bad", "paid", payload={"amount": -5})
    exhausted = make_event("o-exhaust", "paid")
    assert Publisher(settings).publish([make_event("o-bad", "created"), bad,
                                        make_event("o-exhaust", "created"), exhausted]).ok

    letters = {d["event"]["event_id"]: d for d in values(consume_all(settings.bootstrap,
                                                                     settings.dlq_topic, 2))}
    assert letters[bad["event_id"]]["reason"]["kind"] == "effect_failed"
    assert "HTTP 400" in letters[bad["event_id"]]["reason"]["message"]
    assert "invalid amount" in letters[bad["event_id"]]["reason"]["message"]
    assert letters[exhausted["event_id"]]["reason"]["kind"] == "retries_exhausted"
    assert letters[exhausted["event_id"]]["attempts"] == 3
    assert "HTTP 503" in letters[exhausted["event_id"]]["reason"]["message"]
    for order_id in ("o-bad", "o-exhaust"):
        order = order_of(worker, order_id)
        assert order is not None and order["status"] == "created" and order["failure"] is not None
        assert order["history"][-1]["outcome"] == "failed"

    listed = orderflow(settings, "dlq", "list", "--kind", "retries_exhausted")
    assert listed.returncode == 0, listed.stderr
    assert exhausted["event_id"] in listed.stdout and bad["event_id"] not in listed.stdout
    assert "1 shown of 2 dead letters" in listed.stdout

    unknown = orderflow(settings, "dlq", "replay", "--event-id", "no-such-event")
    assert unknown.returncode == 1 and "no-such-event" in unknown.stderr
    assert "Traceback" not in unknown.stderr

    gateway.script("o-exhaust", status=503, times=0)  # the downstream service is healed
    dry = orderflow(settings, "dlq", "replay", "--event-id", exhausted["event_id"], "--dry-run")
    assert dry.returncode == 0 and "1 events would be replayed" in dry.stdout
    time.sleep(1)
    assert order_of(worker, "o-exhaust")["status"] == "created", "a dry run sends nothing"

    replayed = orderflow(settings, "dlq", "replay", "--event-id", exhausted["event_id"])
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed 1 events" in replayed.stdout
    order = reaches(worker, "o-exhaust", "paid")
    assert order["version"] == 2 and order["failure"] is None
    stats = gateway.stats()
    assert stats["applied"][exhausted["event_id"]] == 1
    assert stats["calls"][exhausted["event_id"]] == 4  # 3 refused attempts, then the replay


def test_a_pending_retry_survives_the_kill_of_its_worker(
    settings_factory: SettingsFactory, start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    gateway = start_gateway()
    gateway.script("o-r", status=503, times=1)
    settings = settings_factory()
    # the retry waits 10 to 20 s (jittered over the upper half of the cap): long enough that the
    # kill below (after the events' commit, up to a few seconds) always comes before it is due
    env = {"ORDERFLOW_EFFECTS_URL": gateway.url, "ORDERFLOW_RETRY_BASE_S": "20",
           "ORDERFLOW_RETRY_CAP_S": "20", "ORDERFLOW_SWEEP_INTERVAL_S": "0.5",
           "ORDERFLOW_SESSION_TIMEOUT_S": "8", "ORDERFLOW_HEARTBEAT_S": "1"}
    first = start_worker(settings, "first", **env)
    paid = make_event("o-r", "paid")
    publisher = Publisher(settings)
    assert publisher.publish([make_event("o-r", "created"), paid]).ok
    pending = wait_for(lambda: (o := order_of(first, "o-r")) and o["pending"]["retry"] and o,
                       timeout=30, what="the payment's retry to be scheduled")
    assert pending["pending"]["retry"]["attempts"] == 1
    due = datetime.fromisoformat(pending["pending"]["retry"]["due"]).timestamp()
    # the view shows the retry once it is decided; the kill must come after it is durable (the
    # events committed, which waits for their changelog records), else the redo calls at once
    wait_for(lambda: not any(uncommitted(settings.bootstrap, settings.app_id,
                                         settings.events_topic).values()),
             timeout=30, what="the events to be committed")
    assert due - time.time() > 4, "the retry must still be pending when the worker dies"

    first.kill()
    # later events of the order arrive while nobody runs: they must wait behind the retry
    assert publisher.publish([make_event("o-r", "shipped"), make_event("o-r", "delivered")]).ok
    second = start_worker(settings, "second", **env)  # fresh state dir: recovers from the changelog
    order = reaches(second, "o-r", "delivered", timeout=90)
    assert order["version"] == 4
    assert [h["type"] for h in order["history"] if h["outcome"] == "applied"] == \
        ["created", "paid", "shipped", "delivered"]
    stats = gateway.stats(times=True)
    assert stats["calls"][paid["event_id"]] == 2 and stats["applied"][paid["event_id"]] == 1
    retried_at = stats["call_times"][paid["event_id"]][1]
    assert retried_at >= due - 0.05, "the retry did not fire before it was due"


def _latencies(worker: Worker, published_at: float, order_ids: list[str], status: str) -> list[float]:
    result = []
    for order_id in order_ids:
        order = reaches(worker, order_id, status)
        done = datetime.fromisoformat(order["history"][-1]["at"]).timestamp()
        result.append(done - published_at)
    return result


def test_a_pending_retry_holds_its_order_in_order_while_others_go_on_and_delays_follow_the_schedule(
    settings_factory: SettingsFactory, start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    gateway: GatewayProcess = start_gateway()
    settings = settings_factory(ORDERFLOW_PARTITIONS="1")  # every order below shares one partition
    base, cap = 0.5, 4.0
    worker = start_worker(settings, ORDERFLOW_EFFECTS_URL=gateway.url, ORDERFLOW_RETRY_BASE_S=str(base),
                          ORDERFLOW_RETRY_CAP_S=str(cap), ORDERFLOW_SWEEP_INTERVAL_S="0.1")
    publisher = Publisher(settings)

    def lifecycle(order_id: str, kinds: tuple[str, ...] = ("created", "paid", "shipped")) -> list[dict]:
        return [make_event(order_id, kind, client_id=f"c-{order_id}") for kind in kinds]

    assert publisher.publish(lifecycle("warm-up")).ok
    reaches(worker, "warm-up", "shipped")
    calm = [f"calm{i}" for i in range(20)]
    started = time.time()
    assert publisher.publish([e for oid in calm for e in lifecycle(oid)]).ok
    without_failures = _latencies(worker, started, calm, "shipped")

    gateway.script("slow", status=503, times=4)  # four refusals: retries after 0.5, 1, 2, 4 s ceilings
    gateway.script("throttled", status=429, times=1, retry_after_s=2.5)
    slow = lifecycle("slow", ("created", "paid", "shipped", "delivered"))
    throttled = lifecycle("throttled", ("created", "paid"))
    busy = [f"busy{i}" for i in range(20)]
    started = time.time()
    assert publisher.publish([*slow, *throttled, *(e for oid in busy for e in lifecycle(oid))]).ok
    with_retry = _latencies(worker, started, busy, "shipped")
    waiting = order_of(worker, "slow")
    assert waiting is not None and waiting["status"] == "created" and waiting["pending"]["retry"]
    assert waiting["pending"]["parked"] == 2, "shipped and delivered wait behind the retry"

    order = reaches(worker, "slow", "delivered", timeout=60)
    assert [h["type"] for h in order["history"] if h["outcome"] == "applied"] == \
        ["created", "paid", "shipped", "delivered"]
    assert order["version"] == 4
    reaches(worker, "throttled", "paid")

    print(f"\nother orders' latency (publish to shipped), same partition: without failures "
          f"median {statistics.median(without_failures):.3f}s max {max(without_failures):.3f}s; "
          f"while 'slow' waits for retries median {statistics.median(with_retry):.3f}s "
          f"max {max(with_retry):.3f}s")
    assert max(with_retry) < 2.0, "other orders must not wait behind the retrying order"
    assert statistics.median(with_retry) < statistics.median(without_failures) + 1.0

    times = gateway.stats(times=True)["call_times"]
    calls = times[slow[1]["event_id"]]
    assert len(calls) == 5
    print("retry   configured delay     observed")
    for attempt, (before, after) in enumerate(itertools.pairwise(calls), start=1):
        ceiling = min(cap, base * 2 ** (attempt - 1))
        observed = after - before
        print(f"{attempt:>5}   {ceiling / 2:.2f}s .. {ceiling:.2f}s   {observed:.2f}s")
        assert ceiling / 2 - 0.05 <= observed <= ceiling + 0.6, (attempt, observed, ceiling)
    throttled_calls = times[throttled[1]["event_id"]]
    gap = throttled_calls[1] - throttled_calls[0]
    print(f"429 with Retry-After 2.5s: retried after {gap:.2f}s")
    assert gap >= 2.5 - 0.05
