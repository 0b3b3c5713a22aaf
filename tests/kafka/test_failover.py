"""Two workers; one is killed with SIGKILL mid-stream; the survivor finishes every order right."""

from __future__ import annotations

from pathlib import Path

from streams.tools.publisher import Publisher
from streams.tools.topics import create_topics
from tests.conftest import SettingsFactory
from tests.helpers import consume_all, make_event, uncommitted, values
from tests.scenario import scenario
from tests.workers import Worker, wait_for

FAST_FAILOVER = {"ORDERFLOW_SESSION_TIMEOUT_S": "8", "ORDERFLOW_HEARTBEAT_S": "1",
                 "ORDERFLOW_SWEEP_INTERVAL_S": "0.5", "ORDERFLOW_PARK_TIMEOUT_S": "25"}


def test_sigkill_mid_stream_loses_nothing_and_applies_nothing_twice(
    settings_factory: SettingsFactory, tmp_path: Path
) -> None:
    settings = settings_factory(ORDERFLOW_PARTITIONS="4")
    create_topics(settings)
    a = Worker(settings, tmp_path, "a", **FAST_FAILOVER).start()
    b = Worker(settings, tmp_path, "b", **FAST_FAILOVER).start()
    try:
        a.wait_ready()
        b.wait_ready()
        wait_for(lambda: len(_owners(a)) == 2, timeout=60, what="both workers to own partitions")
        traffic = scenario(orders=120, clients=16, seed=7)
        half = len(traffic.events) // 2
        publisher = Publisher(settings)
        assert publisher.publish(traffic.events[:half]).ok
        # early events that only the second half completes, on every client (so on both workers)
        early = {f"p{c}": make_event(f"p{c}", "shipped", client_id=f"c{c}") for c in range(16)}
        stuck = {f"s{c}": make_event(f"s{c}", "delivered", client_id=f"c{c}") for c in range(16)}
        assert publisher.publish([*early.values(), *stuck.values()]).ok
        assert publisher.publish(
            [make_event(oid, "created", client_id=e["client_id"]) for oid, e in
             [*early.items(), *stuck.items()]]).ok

        # both workers answer every view alike before the kill
        wait_for(lambda: all(_order(a, oid) and _order(a, oid)["pending"]["parked"] == 1
                             for oid in early), timeout=60, what="parked events on both workers")
        for oid in [*early, "o0", "o1", "o2", "o3"]:
            assert _order(a, oid) == _order(b, oid)

        b.kill()  # SIGKILL: no clean shutdown, no final commit
        assert publisher.publish(traffic.events[half:]).ok
        assert publisher.publish(
            [make_event(oid, "paid", client_id=e["client_id"]) for oid, e in early.items()]).ok

        def all_done() -> bool:
            return all((o := _order(a, oid)) is not None and (o["status"], o["version"]) == want
                       for oid, want in traffic.expected.items())

        try:
            wait_for(all_done, timeout=120, what="every order on the survivor to match the model")
        except AssertionError:  # say which orders differ and how, with the survivor's own view
            wrong = {oid: (want, _order(a, oid)) for oid, want in traffic.expected.items()
                     if (o := _order(a, oid)) is None or (o["status"], o["version"]) != want}
            report = "\n".join(
                f"{oid}: want {want}, got " + ("nothing" if got is None else
                f"{got['status']} v{got['version']} pending {got['pending']} history "
                f"{[(h['type'], h['outcome']) for h in got['history']]}")
                for oid, (want, got) in list(wrong.items())[:10])
            share = a.get("/stats?local=1")[1].get("partitions", {})
            counted = {p: v["counts"].get("events", 0) for p, v in share.items()}
            gauges = [line for line in str(a.get("/metrics")[1]).splitlines()
                      if line.startswith(("orderflow_consumer_lag{", "orderflow_lane_queue_depth "))]
            raise AssertionError(f"{len(wrong)} orders differ on the survivor; events it processed per "
                                 f"partition: {counted}; {gauges}:\n{report}"
                                 f"\n--- survivor log:\n{a.log_tail(60)}") from None
        for oid in early:  # parked before the kill, applied after it
            order = wait_for(lambda oid=oid: (o := _order(a, oid)) and o["status"] == "shipped" and o,
                             timeout=60, what=f"parked event of {oid}")
            assert order["version"] == 3
        for oid in traffic.expected:
            order = _order(a, oid)
            applied = [h["event_id"] for h in order["history"] if h["outcome"] == "applied"]
            assert len(applied) == len(set(applied)) == order["version"]
        # and the survivor commits every event: none is left behind its committed offset for good
        wait_for(lambda: not any(uncommitted(settings.bootstrap, settings.app_id,
                                             settings.events_topic).values()),
                 timeout=60, interval=1, what="the survivor to commit every event")
        # pending park timeouts of the killed worker's partitions still fire on the survivor
        # (dead letters are at-least-once: a rejection replayed after the kill may repeat)
        def timed_out() -> set[str]:
            letters = values(consume_all(settings.bootstrap, settings.dlq_topic, 10_000, timeout_s=3))
            return {d["event"]["order_id"] for d in letters if d["reason"]["kind"] == "park_timeout"}

        wait_for(lambda: timed_out() == set(stuck), timeout=90, interval=1,
                 what="every stuck order's park timeout")
        letters = values(consume_all(settings.bootstrap, settings.dlq_topic, 10_000, timeout_s=3))
        rejected = [d["event"]["event_id"] for d in letters if d["reason"]["kind"] == "rejected"]
        assert sorted(set(rejected)) == sorted(traffic.impossible)
    finally:
        for worker in (a, b):
            worker.stop()


def _order(worker: Worker, order_id: str) -> dict | None:
    status, body = worker.get(f"/orders/{order_id}/")
    return body if status == 200 else None


def _owners(worker: Worker) -> set[str]:
    """Workers that own partitions, as Faust's own /router/ view reports them."""
    return set(worker.get("/router/")[1])
