"""The backoff schedule and the due index."""

from __future__ import annotations

import random

from streams.core.retry import Backoff


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
