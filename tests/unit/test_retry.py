"""The backoff schedule and the due index."""

from __future__ import annotations

import random

from streams.retry import Backoff, DueIndex


def test_backoff_doubles_within_jitter_and_stops_at_the_cap() -> None:
    backoff = Backoff(base_s=1.0, cap_s=10.0, max_attempts=5)
    rng = random.Random(3)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (9, 10.0)]:
        delays = [backoff.delay(attempt, rng=rng) for _ in range(200)]
        assert ceiling / 2 <= min(delays) and max(delays) <= ceiling
    assert not backoff.exhausted(4) and backoff.exhausted(5)


def test_retry_after_is_a_lower_bound_but_capped() -> None:
    backoff = Backoff(base_s=1.0, cap_s=30.0)
    assert backoff.delay(1, retry_after_s=7.0) == 7.0
    assert backoff.delay(1, retry_after_s=900.0) == 30.0


def test_due_index_returns_the_earliest_first_and_only_when_due() -> None:
    index = DueIndex()
    index.reset(0)
    index.set(0, "late", 300.0)
    index.set(0, "soon", 1.0)
    index.set(0, "moved", 5.0)
    index.set(0, "moved", 2.0)  # rescheduled: the old entry must not fire it
    assert index.pop_due(0, 0.5) == []
    assert index.pop_due(0, 2.5) == ["soon", "moved"]
    assert index.pop_due(0, 100.0) == []
    index.set(0, "late", None)
    assert index.pop_due(0, 1000.0) == []
    index.set(7, "unbuilt", 1.0)  # a partition not scanned yet is ignored until its scan
    assert index.pop_due(7, 10.0) == []


async def test_a_lane_skips_events_fetched_before_a_rebalance() -> None:
    import asyncio

    from streams.lanes import Lanes

    class Event:  # what a lane needs of a Faust event: something to point the context at
        def __init__(self, name: str) -> None:
            self.name = name

    ran: list[str] = []
    done: list[str] = []
    lanes = Lanes(2, is_current=lambda event: event.name != "stale")
    for name in ("fresh", "stale"):
        async def job(name: str = name) -> None:
            ran.append(name)
        await lanes.submit("o1", Event(name), job, lambda name=name: done.append(name))
    await asyncio.sleep(0.05)
    await lanes.stop()
    assert ran == done == ["fresh"]
