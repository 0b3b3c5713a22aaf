"""Acks that wait for delivery: an event is acked only after what it produced reached Kafka.

Faust commits a partition's acked offsets without waiting for the changelog records (and dead
letters) those events sent with `send_soon`; a worker killed in between would have committed an
event whose state change never reached the changelog. So finished events are collected, the
producer is flushed (waiting for delivery), and only then are they acked, in batches.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)


class FlushThenAck:
    """`before_flush(batch)` runs right before each flush, in the same step as taking the batch
    (the order store writes its changed orders there, so they are in the flush that acks their
    events). When it returns False, nothing of the batch is acked and the batch is tried again
    later. `after_flush` runs once the flush delivered everything; `ack` acks a list of events
    (by default, each by its `ack()`)."""

    def __init__(self, flush: Callable[[], Awaitable[Any]], interval_s: float = 0.02,
                 before_flush: Callable[[list[Any]], Awaitable[bool]] | None = None,
                 is_current: Callable[[Any], bool] = lambda _event: True,
                 after_flush: Callable[[], None] | None = None,
                 ack: Callable[[list[Any]], None] | None = None) -> None:
        self._flush = flush
        self._ack = ack if ack is not None else _ack_each
        self._is_current = is_current
        self._before_flush = before_flush
        self._after_flush = after_flush
        self._interval_s = interval_s
        self._pending: list[Any] = []
        self._wake = asyncio.Event()

    def done(self, event: Any) -> None:
        """The event is finished; it is acked after the next flush."""
        self._pending.append(event)
        self._wake.set()

    async def run(self) -> None:
        """Flush and ack, forever (a Faust app task)."""
        while True:
            await self._wake.wait()
            await asyncio.sleep(self._interval_s)  # gather a batch: one flush for many events
            self._wake.clear()
            batch, self._pending = self._pending, []
            if self._before_flush is not None and not await self._before_flush(batch):
                log.warning("%d events wait: their changes could not be written yet", len(batch))
                self._pending = batch + self._pending
                await asyncio.sleep(0.5)
                self._wake.set()
                continue
            await self._flush()
            if self._after_flush is not None:
                self._after_flush()
            # never ack an event fetched before a rebalance
            self._ack([event for event in batch if self._is_current(event)])


def _ack_each(events: list[Any]) -> None:
    for event in events:
        event.ack()
