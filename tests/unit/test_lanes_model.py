"""bench/lanes_model.py: what each rule for picking a lane allows, with no CPU cost."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bench.lanes_model import free, hashed

Rule = Callable[[int, int, float, int], float]  # (orders, lanes, call_s, in_flight) -> seconds


def share(rule: Rule, orders: int, lanes: int = 64, call_s: float = 0.02, in_flight: int = 2048) -> float:
    return orders / rule(orders, lanes, call_s, in_flight) / (lanes / call_s)


def test_free_lanes_stay_busy_where_hashed_ones_stand_idle() -> None:
    assert share(free, 3000) > 0.99
    assert share(hashed, 3000) < 0.95  # the busiest lane's orders finish last, the others idle


def test_one_lane_is_the_same_under_either_rule() -> None:
    """One lane runs every order one after another: one call time per order either way."""
    assert share(free, 200, lanes=1) == pytest.approx(1.0)
    assert share(hashed, 200, lanes=1) == pytest.approx(1.0)


def test_too_few_events_in_flight_leave_free_lanes_idle_too() -> None:
    """An order in its call holds three events in flight (the call's and the two behind it): ten
    in flight keep at most four of the 64 lanes in a call."""
    assert share(free, 500, in_flight=10) == pytest.approx(4 / 64)
