"""A worker stuck in a rebalance or a recovery (for longer than the limit) is told to stop."""

from __future__ import annotations

from streams.engine.supervision import StuckWatch


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_rebalance_that_lasts_past_the_limit_is_stuck() -> None:
    clock = Clock()
    watch = StuckWatch(60.0, clock)
    assert not watch.stuck(False)
    clock.now = 10
    assert not watch.stuck(True)  # a rebalance begins
    clock.now = 70
    assert not watch.stuck(True)
    clock.now = 71
    assert watch.stuck(True)


def test_the_count_starts_again_after_each_rebalance_and_zero_turns_it_off() -> None:
    clock = Clock()
    watch = StuckWatch(60.0, clock)
    watch.stuck(True)
    clock.now = 59
    watch.stuck(False)  # that one ended in time
    clock.now = 100
    assert not watch.stuck(True)
    clock.now = 150
    assert not watch.stuck(True)
    off = StuckWatch(0.0, clock)
    off.stuck(True)
    clock.now = 10_000
    assert not off.stuck(True)
