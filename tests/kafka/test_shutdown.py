"""SIGTERM: a worker finishes its events in flight, flushes, commits and exits in bounded time; a
restart replays nothing (no event is seen twice, no effect is called twice)."""

from __future__ import annotations

import signal
import time

from streams.tools.publisher import Publisher
from streams.tools.simulate import traffic
from tests.conftest import SettingsFactory
from tests.effects_server import effects_server
from tests.helpers import uncommitted
from tests.workers import Worker, wait_for


def _stats(worker: Worker) -> dict:
    status, body = worker.get("/stats")
    assert status == 200, body
    return body


def test_sigterm_finishes_what_is_in_flight_and_a_restart_replays_nothing(
    settings_factory: SettingsFactory, start_worker
) -> None:
    settings = settings_factory(ORDERFLOW_PARTITIONS="4")
    made = traffic(orders=400, clients=40, seed=11, prefix="g", duplicate_share=0.0)
    # every `paid` waits 300 ms on the effects service and 8 lanes share them: the traffic takes
    # seconds, and at any moment events wait in the lanes and on the effects
    with effects_server(lambda path, body, n: (200, 0.3)) as (url, calls):
        env = {"ORDERFLOW_EFFECTS_URL": url, "ORDERFLOW_SHUTDOWN_TIMEOUT_S": "20",
               "ORDERFLOW_LANES": "8"}
        worker = start_worker(settings, **env)
        half = len(made.events) // 2
        assert Publisher(settings).publish(made.events[:half]).ok
        wait_for(lambda: _stats(worker)["events"]["processed"] >= half // 4, timeout=60,
                 interval=0.2, what="a quarter of the first half to be processed")
        assert worker.proc is not None
        stopped_at = time.monotonic()
        worker.proc.send_signal(signal.SIGTERM)
        code = worker.proc.wait(45)
        took = time.monotonic() - stopped_at
        assert code == 0, worker.log_tail()
        assert took < 20 + 15, f"the stop took {took:.1f}s"
        log = worker.log_path.read_text(errors="replace")
        assert "every event in flight finished; committing" in log
        effects_before_stop = len(calls)
        assert Publisher(settings).publish(made.events[half:]).ok

        again = start_worker(settings, "w1", **env)  # the same state dir: a restart
        def all_done() -> bool:
            return all((o := again.get(f"/orders/{oid}")[1]) and isinstance(o, dict)
                       and (o.get("status"), o.get("version")) == want
                       for oid, want in made.expected.items())
        wait_for(all_done, timeout=120, interval=1, what="every order to end as expected")
        stats = _stats(again)
        assert stats["events"]["duplicates_dropped"] == 0  # nothing replayed past the commit
        assert 0 < effects_before_stop < len(calls), "the stop did not come mid-stream"
        assert max(calls.values()) == 1, "an effect was called twice"
        wait_for(lambda: not any(uncommitted(settings.bootstrap, settings.app_id,
                                             settings.events_topic).values()),
                 timeout=30, interval=1, what="every event to be committed")
