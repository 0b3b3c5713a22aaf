"""No single message stops a partition (on a real worker); a fault no message explains stops the
worker with a non-zero exit, so a supervisor restarts it."""

from __future__ import annotations

import json
from urllib.parse import quote

from streams.tools.publisher import Publisher
from tests.conftest import SettingsFactory
from tests.helpers import committed_and_end, consume_all, make_event, values
from tests.workers import Worker, wait_for


def order_of(worker: Worker, order_id: str) -> dict | None:
    status, body = worker.get(f"/orders/{quote(order_id, safe='')}")
    return body if status == 200 else None


def test_poison_messages_are_dead_letters_and_the_partition_goes_on(
    settings_factory: SettingsFactory, start_worker
) -> None:
    settings = settings_factory(ORDERFLOW_PARTITIONS="1")  # every message in one partition
    worker = start_worker(settings, app="tests.faulty_app")
    pid = worker.proc.pid if worker.proc else None
    publisher = Publisher(settings)
    paid = make_event("o/1 first", "paid", client_id="c1", event_id="bug:paid")  # tests/faulty_app.py
    publisher.send(make_event("o/1 first", "created", client_id="c1"))
    publisher.send_raw("c1", b'{"a":' * 5000 + b"1" + b"}" * 5000)  # once a RecursionError
    not_json = json.dumps(make_event("o2", "created", client_id="c1", payload={"amount": float("nan")}))
    assert "NaN" in not_json  # Python's json writes it; JSON does not allow it
    publisher.send_raw("c1", not_json.encode())
    publisher.send(paid)
    # an integer no 64-bit codec writes, on an event that parks (kept whole in its order's record):
    # once the flush writing that record failed, and the worker with it, again after every restart
    huge = make_event("o4", "paid", client_id="c1", payload={"amount": 1})
    publisher.send_raw("c1", json.dumps(huge).replace('"amount": 1', '"amount": ' + "9" * 30).encode())
    # messages on the internal retry topic that are not the worker's: a tombstone, not JSON, not
    # an object (a tombstone once crashed the agent: an outage until someone deleted it)
    for foreign in (None, b"\xff not json", b"[1, 2]"):
        publisher.send_raw("c1", foreign, topic=settings.retry_topic)  # type: ignore[arg-type]
    publisher.send(make_event("o3", "created", client_id="c1"))
    publisher.send(make_event("o/1 first", "cancelled", client_id="c1"))
    assert publisher.flush().ok

    after = wait_for(lambda: order_of(worker, "o3"), timeout=60, what="o3, after the poison")
    assert after["status"] == "created"
    first = wait_for(lambda: (o := order_of(worker, "o/1 first")) and o["status"] == "cancelled" and o,
                     timeout=30, what="the poisoned order to take its next event")
    assert first["history"][1]["outcome"] == "failed" and first["history"][1]["event_id"] == paid["event_id"]
    _, foreign_end = committed_and_end(settings.bootstrap, settings.app_id, settings.retry_topic)
    wait_for(lambda: committed_and_end(settings.bootstrap, settings.app_id, settings.retry_topic)[0]
             >= foreign_end, timeout=60, what="the retry topic's foreign messages to be passed over")

    letters = values(consume_all(settings.bootstrap, settings.dlq_topic, 4))
    kinds = sorted(letter["reason"]["kind"] for letter in letters)
    assert kinds == ["invalid_event", "invalid_event", "invalid_event", "processing_error"]
    error = next(x for x in letters if x["reason"]["kind"] == "processing_error")
    assert error["reason"]["message"] == "ZeroDivisionError: a planted bug"
    assert error["event"] == paid and len(error["id"]) == 32
    messages = " | ".join(x["reason"]["message"] for x in letters)
    assert "nested deeper than 32 levels" in messages and "NaN is not a JSON number" in messages
    assert "is outside the 64-bit integer range" in messages
    assert len({x["id"] for x in letters}) == 4
    # the same process all along, and ready
    assert worker.proc is not None and worker.proc.poll() is None and worker.proc.pid == pid
    assert worker.get("/ready")[0] == 200


def test_a_fault_no_message_explains_stops_the_worker_non_zero(
    settings_factory: SettingsFactory, start_worker
) -> None:
    settings = settings_factory(ORDERFLOW_PARTITIONS="1")
    worker = start_worker(settings, app="tests.faulty_app")
    publisher = Publisher(settings)
    publisher.send(make_event("o1", "created", client_id="c1", event_id="fatal:created"))
    assert publisher.flush().ok
    assert worker.proc is not None
    code = wait_for(lambda: worker.proc.poll() is not None and (worker.proc.returncode,), timeout=60,
                    what="the worker to exit")[0]
    assert code != 0, worker.log_tail()
    log = worker.log_path.read_text(errors="replace")
    assert "stopping the worker after a fatal error" in log
    assert "dead-letter topic refused the letter (planted)" in log


def test_a_worker_in_one_rebalance_past_the_stuck_limit_stops_non_zero(
    settings_factory: SettingsFactory, tmp_path
) -> None:
    # A worker SIGKILLed stays in its group until its session times out (30 s here), so the next
    # worker's first rebalance waits that long: with a limit of 3 s it counts as stuck, which also
    # proves the watch runs from the worker's start (Faust's own timers start only after it).
    from streams.tools.topics import create_topics

    settings = settings_factory(ORDERFLOW_PARTITIONS="2")
    create_topics(settings)
    first = Worker(settings, tmp_path, "first", ORDERFLOW_SESSION_TIMEOUT_S="30").start().wait_ready()
    first.kill()
    second = Worker(settings, tmp_path, "second", ORDERFLOW_STUCK_AFTER_S="3").start()
    assert second.proc is not None
    assert second.proc.wait(60) != 0
    assert "in a rebalance or recovery for over" in second.log_path.read_text(errors="replace")
