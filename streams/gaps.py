"""Notice messages Faust skipped, and fetch them, so no event is lost.

Faust (0.15, with aiokafka) can skip a message of a partition right after a rebalance: the stream
hands over offset 7 after offset 5, and offset 6 never comes (the failover test caught an order that
never received its `shipped`). Offsets of a plain topic are consecutive, so a forward jump within
one assignment is visible. The agent then reads the missing offsets with a side consumer (assigned,
no group, nothing committed) and processes them before the message that revealed the jump, in
partition order. Seeking Faust's own consumer back is not safe: its fetch loop may move its read
offset past the seek and drop the refetched messages.

A jump can be real (transaction markers and compaction leave holes); then the side consumer finds
nothing there, and nothing is lost either way.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

TP = tuple[str, int]
Fetched = list[tuple[int, bytes | None, bytes | None]]  # (offset, key, value)
log = logging.getLogger(__name__)


class GapGuard:
    def __init__(self, conf: dict[str, Any], group_id: str) -> None:
        self._conf = conf
        self._group_id = group_id
        self._last: dict[TP, int] = {}
        self._consumer: Consumer | None = None
        self.filled = 0

    async def missing(self, tp: TP, offset: int) -> range:
        """Offsets skipped before `offset` in this partition (empty almost always). Going back is
        fine: that is Faust seeking to the committed offset."""
        last = self._last.get(tp)
        if last is None:
            try:
                committed = await asyncio.to_thread(self.committed, tp)
            except KafkaException as exc:  # no baseline this time; later jumps are still caught
                log.warning("could not read the committed offset of %s[%d]: %s", tp[0], tp[1], exc)
                committed = None
            last = committed - 1 if committed is not None else None
        self._last[tp] = offset
        return range(last + 1, offset) if last is not None and offset > last + 1 else range(0)

    def reset(self) -> None:
        """A rebalance: Faust seeks every partition to its committed offset, start afresh."""
        self._last.clear()

    async def fetch(self, tp: TP, offsets: range) -> Fetched:
        """The messages at `offsets` (fewer when the log has holes there)."""
        fetched = await asyncio.to_thread(self._fetch, tp, offsets)
        self.filled += len(fetched)
        return fetched

    def committed(self, tp: TP, timeout_s: float = 10.0) -> int | None:
        """The group's committed offset of `tp` (None when it has none: Faust starts at the
        earliest message then, and any start is right)."""
        reader = Consumer({**self._conf, "group.id": self._group_id, "enable.auto.commit": False})
        try:
            (position,) = reader.committed([TopicPartition(tp[0], tp[1])], timeout=timeout_s)
        finally:
            reader.close()
        return position.offset if position.offset >= 0 else None

    def _side_consumer(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer({**self._conf, "group.id": f"orderflow-gaps-{uuid.uuid4().hex}",
                                       "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        return self._consumer

    def _fetch(self, tp: TP, offsets: range, timeout_s: float = 10.0) -> Fetched:
        consumer = self._side_consumer()
        low, high = consumer.get_watermark_offsets(TopicPartition(tp[0], tp[1]), timeout=timeout_s)
        offsets = range(max(offsets.start, low), min(offsets.stop, high))
        if not offsets:
            return []
        consumer.assign([TopicPartition(tp[0], tp[1], offsets.start)])
        fetched: Fetched = []
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                message = consumer.poll(0.5)
                if message is None or message.error():
                    continue
                offset = int(message.offset() or 0)
                if offset >= offsets.stop:
                    break
                fetched.append((offset, message.key(), message.value()))
                if offset == offsets.stop - 1:
                    break
        finally:
            consumer.unassign()
        return fetched
