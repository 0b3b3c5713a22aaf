"""A worker stuck out of its group (not ready long after it was ready) is told to stop."""

from __future__ import annotations

from streams.engine.supervision import StuckWatch


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_not_ready_past_the_limit_after_being_ready_is_stuck() -> None:
    clock = Clock()
    watch = StuckWatch(60.0, clock)
    clock.now = 500
    assert not watch.stuck(False)  # starting (a cold recovery may be long): never stuck
    assert not watch.stuck(True)
    clock.now = 510
    assert not watch.stuck(False)  # a rebalance begins
    clock.now = 560
    assert not watch.stuck(False)
    clock.now = 571
    assert watch.stuck(False)


def test_readiness_in_between_starts_the_count_again_and_zero_turns_it_off() -> None:
    clock = Clock()
    watch = StuckWatch(60.0, clock)
    watch.stuck(True)
    watch.stuck(False)
    clock.now = 59
    watch.stuck(True)
    clock.now = 100
    assert not watch.stuck(False)
    clock.now = 150
    assert not watch.stuck(False)
    off = StuckWatch(0.0, clock)
    off.stuck(True)
    clock.now = 10_000
    assert not off.stuck(False)
