"""Fetches that gather a few milliseconds of records while events flow, and wake at once when idle.

Faust builds its aiokafka consumer with `fetch_min_bytes=1`, so while events trickle in (a steady
1,000 events/s per worker) every fetch returns as soon as one record is there: 96 to 185 fetch
round trips a second per worker, each a request, a response to parse and a hand-over between the
consumer's thread and the event loop, for a handful of records. Measured side by side at 2,000
events/s with two workers (bench/RESULTS.md, 2026-12-02): 54 to 56% of a core per worker, against
43 to 47% with fetches that wait up to 10 ms for more, on a machine whose two cores the broker and
the workers otherwise nearly fill, so the saved CPU is latency headroom.

A fixed wait would cost an idle worker a fetch every few milliseconds, so the wait adapts: after a
fetch that brought records, the next asks the broker to hold it until `GATHER_BYTES` or `wait_ms`;
after an empty one, it goes back to Faust's (any record answers it at once, else it waits 1.5 s).
The first event after a quiet spell is fetched at once; events that follow it are gathered.
The two settings are the fetcher's, not a broker's: with several brokers, the last answer sets
them for the next fetch of each. Written against aiokafka 0.14 (its `Fetcher` reads these two
attributes each time it builds a request).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

GATHER_BYTES = 1_000_000  # more than a wait of a few ms brings at these rates: the wait decides


def gather_fetches(consumer: Any, wait_ms: int) -> bool:
    """Make `consumer`'s (a started AIOKafkaConsumer) fetches adapt as above; False if this
    aiokafka has no fetcher of the shape it was written for (its fetches then stay as they are)."""
    fetcher = getattr(consumer, "_fetcher", None)
    known = ("_proc_fetch_request", "_fetch_min_bytes", "_fetch_max_wait_ms")
    if wait_ms <= 0 or fetcher is None or not all(hasattr(fetcher, name) for name in known):
        if wait_ms > 0:
            log.warning("this aiokafka's fetcher is not the one orderflow knows: fetches not gathered")
        return False
    idle = (fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms)
    fetch: Callable[..., Awaitable[bool]] = fetcher._proc_fetch_request

    async def adapting(assignment: Any, node_id: int, request: Any) -> bool:
        brought = await fetch(assignment, node_id, request)  # True when records were added
        fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms = (GATHER_BYTES, wait_ms) if brought else idle
        return brought

    fetcher._proc_fetch_request = adapting
    return True
