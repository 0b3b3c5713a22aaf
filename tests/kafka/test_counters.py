"""/stats counters never go backwards: read all along while a worker is SIGKILLed and restarted
under load."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

from streams.tools.publisher import Publisher
from streams.tools.topics import create_topics
from tests.conftest import SettingsFactory
from tests.scenario import scenario
from tests.workers import Worker, wait_for

COUNTERS = (("events", "processed"), ("events", "applied"), ("events", "duplicates_dropped"),
            ("events", "rejected"), ("dead_letters", "total"), ("retries", "scheduled"))


def test_counters_never_decrease_across_a_sigkill_restart_under_load(
    settings_factory: SettingsFactory, tmp_path: Path
) -> None:
    settings = settings_factory(ORDERFLOW_PARTITIONS="4")
    create_topics(settings)
    worker = Worker(settings, tmp_path, "w", ORDERFLOW_SESSION_TIMEOUT_S="6",
                    ORDERFLOW_HEARTBEAT_S="1").start().wait_ready()
    traffic = scenario(orders=600, clients=30, seed=5)
    readings: list[dict[str, int]] = []
    stop = threading.Event()

    def publish() -> None:  # steadily, so events keep coming across the kill
        publisher = Publisher(settings)
        for n, event in enumerate(traffic.events):
            publisher.send(event)
            if n % 50 == 0:
                publisher.flush()
                time.sleep(0.2)
        publisher.flush()

    def poll() -> None:
        while not stop.is_set():
            try:
                status, body = worker.get("/stats", timeout=2)
            except OSError:
                status, body = 0, None
            if status == 200 and body.get("complete"):
                readings.append({f"{a}.{b}": body[a][b] for a, b in COUNTERS})
            time.sleep(0.1)

    publisher = threading.Thread(target=publish)
    poller = threading.Thread(target=poll)
    publisher.start()
    poller.start()
    try:
        wait_for(lambda: len(readings) > 5 and readings[-1]["events.processed"] > 300, timeout=60,
                 interval=0.2, what="the worker to be well into the traffic")
        worker.kill()
        before_kill = len(readings)
        worker.start().wait_ready(timeout=120)
        publisher.join()
        wait_for(lambda: readings and readings[-1]["events.processed"] >= len(traffic.events),
                 timeout=120, interval=0.5, what="every event to be counted")
    finally:
        stop.set()
        poller.join()
        worker.stop()
    assert before_kill > 5 and len(readings) > before_kill + 5  # read before and after the kill
    for name in readings[0]:
        series = [r[name] for r in readings]
        drops = [(a, b) for a, b in itertools.pairwise(series) if b < a]
        assert not drops, f"{name} went backwards: {drops[:5]}"
