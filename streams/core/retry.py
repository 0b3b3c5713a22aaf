"""Delayed retries: the backoff schedule.

The durable truth of a pending retry is the order record itself, changelogged with the order; its
due time is an entry of the time-ordered index (streams/index.py), read by the partition's tick.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: attempt n waits uniform(0, min(cap, base * 2**(n-1)))
    but never less than half of it, so retries spread without collapsing to zero."""

    base_s: float = 1.0
    cap_s: float = 300.0
    max_attempts: int = 8

    def ceiling(self, attempt: int) -> float:
        return min(self.cap_s, self.base_s * 2 ** max(attempt - 1, 0))

    def delay(
        self, attempt: int, retry_after_s: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait before attempt `attempt + 1`; a server's Retry-After is a lower bound."""
        ceiling = self.ceiling(attempt)
        delay = (rng or random).uniform(ceiling / 2, ceiling)
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self.cap_s))
        return delay

    def exhausted(self, attempts: int) -> bool:
        return attempts >= self.max_attempts
