"""No event lost around a rebalance: three holes in Faust's (0.15, aiokafka) hand-over, plugged.

The failover test (a worker killed mid-stream) caught orders that missed events, or never got any:

1. Faust's stream acks a message it skips (fetched in an older generation, or while its flow was
   stopped); that offset can be committed and the message is never delivered again:
   `refuse_acks_of_skipped`.
2. Faust drops records fetched while its flow is stopped and seeks back to the committed offset to
   refetch them, but aiokafka seeks only to a committed offset above 0: a partition nobody has
   committed yet is never refetched: `seek_uncommitted_to_beginning`.
3. Whatever else skips: offsets of a plain topic are consecutive, so a forward jump is visible.
   `GapGuard` notices it (after a rebalance, against the committed offset, or the first offset
   when none is committed), reads the missing offsets with a side consumer (assigned, no group,
   nothing committed), and the agent processes them before the message that revealed the jump, in
   partition order. A jump can be real (transaction markers and compaction leave holes); then the
   side consumer finds nothing there, and nothing is lost either way. The filled offsets were
   never Faust messages, so Faust's commit would wait below them forever: `FilledGap` tells it
   they are done, once they are.
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
    """Per partition, the last offset the agent got; `missing` names what was skipped since."""

    def __init__(self, conf: dict[str, Any], group_id: str) -> None:
        self._conf = conf
        self._group_id = group_id
        self._last: dict[TP, int] = {}
        self._consumer: Consumer | None = None
        self.filled = 0

    def in_line(self, tp: TP, offset: int) -> bool:
        """True, and noted, when `offset` is the next one of `tp` or goes back (nothing skipped: the
        case of almost every message, answered without a coroutine); False: ask `missing`."""
        last = self._last.get(tp)
        if last is None or offset > last + 1:
            return False
        self._last[tp] = offset
        return True

    async def missing(self, tp: TP, offset: int) -> range:
        """Offsets skipped before `offset` in this partition (empty almost always). Going back is
        fine: that is Faust seeking to the committed offset."""
        last = self._last.get(tp)
        if last is None:
            try:
                expected = await asyncio.to_thread(self.first_expected, tp)
            except KafkaException as exc:  # no baseline this time; later jumps are still caught
                log.warning("could not read the committed offset of %s[%d]: %s", tp[0], tp[1], exc)
            else:
                last = expected - 1
                if offset != expected:
                    log.info("%s[%d]: first message after the rebalance is %d, expected %d",
                             tp[0], tp[1], offset, expected)
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

    def first_expected(self, tp: TP) -> int:
        """Where a partition's reading starts after a rebalance: its committed offset, or, with
        none, its first offset (the app reads from the earliest)."""
        committed = self.committed(tp)
        return committed if committed is not None else self.low(tp)

    def committed(self, tp: TP, timeout_s: float = 10.0) -> int | None:
        """The group's committed offset of `tp`, None when it has none."""
        reader = Consumer({**self._conf, "group.id": self._group_id, "enable.auto.commit": False})
        try:
            (position,) = reader.committed([TopicPartition(tp[0], tp[1])], timeout=timeout_s)
        finally:
            reader.close()
        return position.offset if position.offset >= 0 else None

    def low(self, tp: TP, timeout_s: float = 10.0) -> int:
        """The partition's first offset: where a group without a committed offset starts."""
        low, _high = self._side_consumer().get_watermark_offsets(TopicPartition(tp[0], tp[1]),
                                                                 timeout=timeout_s)
        return int(low)

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


def refuse_acks_of_skipped(consumer: Any, topics: set[str]) -> None:
    """Make `consumer` ignore acks of messages of `topics` its streams never delivered.

    Faust's stream acks a message it skips because it was fetched in an older generation (or while
    flow was stopped for a rebalance). That offset can then be committed, and Faust seeks to the
    committed offset when the rebalance ends: the message is never delivered again and its event is
    lost. Only messages a stream delivered (Faust marks them `tracked`) may be acked; a skipped one
    stays unacked, so its offset is not committed and it is delivered again.
    """
    if getattr(consumer, "_orderflow_refuses_skipped", False):
        return
    ack = consumer.ack

    def ack_delivered(message: Any) -> bool:
        if message.topic in topics and not message.tracked:
            log.debug("not acking %s[%d]@%d: the stream skipped it", message.topic, message.partition,
                     message.offset)
            return False
        return bool(ack(message))

    consumer.ack = ack_delivered
    consumer._orderflow_refuses_skipped = True


def seek_uncommitted_to_beginning(consumer: Any, topics: set[str]) -> None:
    """Make Faust's seek-to-committed also seek partitions of `topics` without a committed offset.

    Faust drops records fetched while its flow is stopped (during a rebalance and the recovery
    after it) and relies on seeking to the committed offset to fetch them again. aiokafka seeks
    only to a committed offset above 0: a partition nobody has committed yet (a worker killed
    before its first commit) stays where the dropped fetch left it, and those events are never
    delivered. Seeking such a partition to its beginning is what `auto_offset_reset="earliest"`
    promises; the events it re-delivers are dropped as duplicates by their event ids. The seek
    runs in the consumer's thread, where aiokafka's fetcher lives (Faust's `seek_wait`).
    """
    if getattr(consumer, "_orderflow_seeks_uncommitted", False):
        return
    seek_to_committed = consumer.seek_to_committed

    async def seek_to_committed_or_beginning() -> Any:
        committed = await seek_to_committed()
        uncommitted = [tp for tp, offset in committed.items() if tp.topic in topics and not offset]
        if uncommitted:
            log.info("no committed offset for %s: reading them from the beginning",
                     ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(uncommitted)))
            # seek_wait, not seek: Faust's `seek` calls aiokafka's from the event loop's thread,
            # while aiokafka runs in the consumer's own thread (its buffers, its loop's futures)
            await consumer.seek_wait(dict(await consumer.earliest_offsets(*uncommitted)))
        return committed

    consumer.seek_to_committed = seek_to_committed_or_beginning
    consumer._orderflow_seeks_uncommitted = True


class FilledGap:
    """The event that revealed a gap, standing in for it in the acks: acking it also marks the
    filled offsets done in Faust's commit bookkeeping (as Faust does for holes it sees itself), so
    the partition's committed offset moves past them. Acked only after every filled message and
    the event itself are finished and flushed."""

    def __init__(self, event: Any, consumer: Any, filled: range) -> None:
        self.event = event
        self.message = event.message
        self._consumer = consumer
        self._filled = filled

    def ack(self) -> bool:
        tp = self.message.tp
        committed = self._consumer._committed_offset[tp]  # offsets below it need no marking
        start = self._filled.start if committed is None else max(self._filled.start, committed)
        if start < self._filled.stop:
            gaps = self._consumer._gap[tp]  # Faust's own record of offsets without a message
            gaps.addi(start, self._filled.stop)
            gaps.merge_overlaps()
        return bool(self.event.ack())
