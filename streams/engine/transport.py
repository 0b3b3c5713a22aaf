"""Faust's per-message path made lean: its aiokafka transport, minus four new tasks per message,
and a schema that hands over a message's bytes as they are.

Faust's `Consumer._drain_messages` delivers every fetched message with
`wait_first(callback(message), suspend_flow.wait())`, which wraps the callback, the suspend flag,
and the consumer's stopped and crashed flags in a task each, waits for the first, and cancels the
rest: several event-loop turns per message, in every Faust app. Our profile of the worker put that
above everything our processor does per event. Its purpose is to never block draining while the
flow is stopped (a rebalance or a table recovery: the recovery needs the changelog messages this
same loop delivers). So here, while the flow runs, the conductor's callback is awaited directly
(its flow-control wait returns at once then; a full channel queue or producer buffer waits as
backpressure, as it should); while the flow is stopped, Faust's own `wait_first` is used unchanged.
A delivery awaited directly can outlive the start of a rebalance, so the read offset is only
advanced when the consumer generation did not change meanwhile (else the rebalance's seek back to
the committed offset would be undone and the loop would skip what it fetches again).
The rest of the loop is Faust's (faust-streaming 0.15.3, `faust/transport/consumer.py`).

Commits never pass a message still in flight. Faust's `_new_offset` commits the run of acked
offsets that starts one past the committed offset even when the message *at* the committed offset
is still being processed (faust-streaming#606): with lanes finishing events out of order, a worker
killed then would lose that event. Acks above the first in-flight message of a partition (tracked
in this consumer generation, not acked yet) now wait for it. That first message is kept per
partition as messages are tracked (`InFlight`), not found by walking every message in flight at
each commit: with 20,000 in flight that walk held the loop 2.8 ms a commit (bench/RESULTS.md,
2026-12-05 18:25).

Fetches are bounded and fair. Unbounded (Faust's default), every record aiokafka has fetched is
decoded into a `ConsumerRecord` in one step: with a backlog, 300,000 records (136 MB) at once and a
quarter-second stall. Bounded by `broker_max_poll_records`, aiokafka serves partitions in the order
their fetches arrived and starts each call with the first one, so a partition with a deep backlog
is served again and again and the others (the retry topic's) wait for minutes. `FairConsumerThread`
moves the partitions it just served to the back of that order, so each call starts where the last
one stopped.

No Faust message per input record. Faust's `getmany` turns every fetched record into a
`ConsumerMessage` (seventeen attributes, its sizes measured) and tells its monitor the partition's
high watermark once per record; the drain loop then wrapped each in a `Delivered`. Here `getmany`
(Faust's, otherwise unchanged) makes a record of the inbox's topics a `Delivered` at once, a
slotted object that is its own `.message`, and tells the monitor once per partition and fetch:
one object fewer per event for the CPU and for every young collection to walk (about 8% more
events/s side by side, bench/RESULTS.md, 2026-12-04). Records of other topics (the changelogs
being recovered, any other agent's) still become Faust's messages.

No fetched record dropped for good. Faust's `getmany` drops the records of a fetch when the flow
stopped since (a rebalance began) or their partition was paused, and counts on the seek to the
committed offset at the end of the rebalance to fetch them again. That seek does not cover the
tables' changelog partitions: a recovery that sought its changelog partitions and whose first
records were fetched just before it resumed the flow lost them, and waited for them for good (the
recovery stall that `streams/engine/waits.py`'s report caught; README, rebalance guard 6). Here
every partition with records dropped is sought back to the first of them, in aiokafka's thread,
unless a seek moved it after that fetch (`rewind`).

`RawBytes`: Faust's `raw` serializer still runs each key and value through its codec registry
(several calls and settings lookups per message); the agent decodes and validates bytes itself.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, cast

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as driver
from faust.types import TP
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

from streams.engine.delivery import MAX_BATCH, Delivered, Inbox
from streams.engine.fetches import gather_fetches
from streams.engine.supervision import HARD_EXIT_GRACE_S, arm_hard_exit

YIELD_EVERY = 100
#: delivered input messages not yet acked, at most, before the drain loop waits (see _room_in_flight).
#: At full speed a flush cycle acks about a third of a second of events while the next third is
#: taken: 5,000 left the loop idle 8% of the time waiting for acks at 17,000 events/s, 20,000 2%
#: (bench/RESULTS.md, 2026-12-05). It binds only when the flushes fall behind the fetch.
MAX_IN_FLIGHT = 20_000
IN_FLIGHT_POLL_S = 0.005


class FairConsumerThread(driver.AIOKafkaConsumerThread):
    """Faust's aiokafka consumer thread, serving fetched partitions round-robin (see above), its
    fetches gathered while events flow (streams/engine/fetches.py)."""

    async def on_start(self) -> None:
        await super().on_start()
        gather_fetches(self._consumer, getattr(self.app, "fetch_gather_ms", 0))

    async def _fetch_records(self, consumer: Any, active_partitions: set[TP],
                             timeout: float | None = None, max_records: int | None = None) -> Any:
        records = await super()._fetch_records(consumer, active_partitions, timeout=timeout,
                                               max_records=max_records)
        if not records:
            return records
        if max_records is not None:
            served_last(consumer._fetcher._records, records)
        return Fetched(records, positions_of(consumer, records))

    async def seek_back(self, dropped: dict[TP, tuple[int, int]]) -> list[TP]:
        """Seek each partition of `dropped` back to its first dropped offset, in this thread
        (aiokafka's), unless something moved it since the fetch; the partitions sought back."""
        return list(await self.call_thread(self._rewind, dropped))

    async def _rewind(self, dropped: dict[TP, tuple[int, int]]) -> list[TP]:
        return rewind(self._ensure_consumer(), dropped)  # no await: one step of this thread


class Fetched(dict[TP, list[Any]]):
    """One fetch's records by partition, with where the fetch left each partition's position
    (past the last record, or past a compacted batch's end)."""

    def __init__(self, records: Mapping[TP, list[Any]], positions: dict[TP, int]) -> None:
        super().__init__(records)
        self.positions = positions


def positions_of(client: Any, partitions: Any) -> dict[TP, int]:
    """The current position of each partition (in the consumer's thread)."""
    assignment = client._subscription.subscription.assignment
    positions = {}
    for tp in partitions:
        state = assignment.state_value(tp)
        if state is not None and state.has_valid_position:
            positions[tp] = state.position
    return positions


def rewind(client: Any, dropped: dict[TP, tuple[int, int]]) -> list[TP]:
    """For each partition, `(first, fetched_to)`: records from offset `first` were fetched and never
    delivered, and that fetch left the position at `fetched_to`. Seek it back to `first` when its
    position is still `fetched_to`; any other position means a seek came after the fetch (a
    recovery's, or the rebalance's seek to the committed offset) and stands. Runs in the
    consumer's thread: aiokafka's state is that thread's."""
    subscription = client._subscription
    assignment = subscription.subscription.assignment if subscription.subscription else None
    sought = []
    for tp, (first, fetched_to) in dropped.items():
        if assignment is None or not subscription.is_assigned(tp):
            continue
        state = assignment.state_value(tp)
        if state is not None and state.has_valid_position and state.position == fetched_to:
            client.seek(tp, first)
            sought.append(tp)
    return sought


def unserved(records: Mapping[TP, list[Any]], served: dict[TP, int]) -> dict[TP, tuple[int, int]]:
    """Per partition with records past its `served` first: the first of those, and where the
    fetch left its position (`Fetched`; else one past its last record)."""
    positions = getattr(records, "positions", {})
    return {tp: (batch[served.get(tp, 0)].offset, positions.get(tp, batch[-1].offset + 1))
            for tp, batch in records.items() if served.get(tp, 0) < len(batch)}


def served_last(fetched: Any, served: Any) -> None:
    """Move the partitions just served to the end of aiokafka's ordered map of fetched records."""
    for tp in served:
        if tp in fetched:
            fetched.move_to_end(tp)


class InFlight:
    """Per partition, the messages tracked and not yet known acked, in the order they were
    delivered, so the first one still in flight is found without walking them all. Delivered
    offsets rise within a consumer generation, so the first message not acked (of the current
    generation) is the lowest; the older generations' messages, all ahead of the current one's,
    are dropped as they come to the head. A partition where one came lower than the one before in
    the same generation (not expected) is walked whole instead. Messages are held until their ack
    is seen at the head of their partition's line: `settle` after acks, and at every commit."""

    __slots__ = ("_lines", "_unordered")

    def __init__(self) -> None:
        self._lines: dict[TP, deque[Any]] = {}
        self._unordered: set[TP] = set()

    def add(self, message: Any) -> None:
        tp = message.tp
        line = self._lines.get(tp)
        if line is None:
            line = self._lines[tp] = deque()
        elif line and line[-1].offset >= message.offset and line[-1].generation_id == message.generation_id:
            self._unordered.add(tp)  # not expected (offsets rise in a generation): walked whole
        line.append(message)

    def settle(self, tps: Iterable[TP], generation: int) -> None:
        """Drop the acked messages (and those of older generations) at the head of each line."""
        lines = self._lines
        for tp in tps:
            line = lines.get(tp)
            while line and (line[0].acked or line[0].generation_id != generation):
                line.popleft()

    def floor(self, generation: int) -> dict[TP, int]:
        """Per partition, the lowest offset delivered in `generation` and not acked yet."""
        self.settle(list(self._lines), generation)
        floor: dict[TP, int] = {}
        for tp, line in self._lines.items():
            if not line:
                continue
            if tp not in self._unordered:
                floor[tp] = line[0].offset
                continue
            offsets = [m.offset for m in line if not m.acked and m.generation_id == generation]
            if offsets:
                floor[tp] = min(offsets)
            else:
                self._unordered.discard(tp)  # nothing left in flight: in order again
        return floor


class Consumer(driver.Consumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_flight_floor: dict[TP, int] = {}  # set for the length of one commit
        self._in_flight = InFlight()

    def track_message(self, message: Any) -> None:
        super().track_message(message)
        self._in_flight.add(message)

    def _new_consumer_thread(self) -> FairConsumerThread:
        return FairConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:  # the fetcher's background loop
        callback = self.callback
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        suspend_flow = self.suspend_flow
        app = self.app
        flow_control = app.flow_control
        read_offset = self._read_offset
        acks_enabled_for = app.topics.acks_enabled_for
        inbox: Inbox | None = getattr(app, "inbox", None)
        inbox_topics = inbox.topics if inbox is not None else frozenset()
        batch: list[Delivered] = []
        since_yield = 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                fetched = self.getmany(timeout=1.0)
                await self.sleep(0)  # getmany may return at once, again and again
                if self.should_stop:
                    continue
                async for tp, message in fetched:
                    since_yield += 1
                    if since_yield > YIELD_EVERY:
                        await asyncio.sleep(0)
                        since_yield = 0
                    offset = message.offset
                    last = read_offset[tp]
                    if last is not None and offset < last:
                        continue  # already delivered (Faust drops these too)
                    if last and offset - last > 1 and acks_enabled_for(message.topic):
                        await self._add_gap(tp, last + 1, offset)
                    if self._commit_every is not None and self._n_acked >= self._commit_every:
                        self._n_acked = 0
                        await self.commit()
                    generation = app.consumer_generation_id
                    if message.topic in inbox_topics:  # streams/engine/delivery.py
                        if (message.generation_id == generation and flow_control.is_active()
                                and not suspend_flow.is_set()):
                            delivered = message if type(message) is Delivered else Delivered(message, self)
                            if acks_enabled_for(message.topic):
                                delivered.tracked = True
                                self.track_message(delivered)  # type: ignore[arg-type]  # its fields
                            batch.append(delivered)
                        # else a rebalance is under way: dropped unseen, fetched again after it
                        read_offset[tp] = offset
                        if len(batch) >= MAX_BATCH:
                            batch = await self._hand_over(inbox, batch)
                        continue
                    if batch:  # keep the order of delivery across topics
                        batch = await self._hand_over(inbox, batch, wait_for_room=False)
                    if flow_control.is_active() and not suspend_flow.is_set():
                        await callback(message)
                    else:
                        await self.wait_first(callback(message), suspend_flow.wait())
                    if app.consumer_generation_id == generation:
                        read_offset[tp] = offset
                    # else a rebalance came while the delivery waited (for the producer buffer to
                    # ebb, say) and may have sought back already: this stale offset must not make
                    # the loop skip the messages fetched again from the committed offset.
                if batch:
                    batch = await self._hand_over(inbox, batch)
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Any]]:
        """Faust's `Consumer.getmany` (faust-streaming 0.15.3), but a record of the inbox's topics
        becomes a `Delivered` at once, with no `ConsumerMessage` in between, and the partition's
        high watermark is told to Faust's monitor once per fetch, not once per record."""
        records, active_partitions = await self._wait_next_records(timeout)
        generation_id = self.app.consumer_generation_id
        if records is None or self.should_stop:
            return
        if not self.flow_active:
            self.log.dev("getmany called while flow not active. Seek back to committed offsets.")
            await self._seek_back_unserved(records, {})
            try:
                await self.perform_seek()
            except Exception as ex:
                self.log.warning(f"exception performing seek when flow not active {ex}")
            return
        inbox: Inbox | None = getattr(self.app, "inbox", None)
        inbox_topics = inbox.topics if inbox is not None else frozenset()
        to_message, monitor, app = self._to_message, self.app.monitor, self.app
        served: dict[TP, int] = {}  # records of each partition yielded, from its first
        stopped: set[TP] = set()  # partitions whose rest of this fetch is dropped
        halted = False
        for tp, record in self.scheduler.iterate(records):
            if not self.flow_active or app.consumer_generation_id != generation_id:
                halted = True
                break
            if stopped and tp in stopped:
                continue
            if active_partitions is None or tp in active_partitions or tp in self._buffered_partitions:
                count = served.get(tp)
                if count is None:  # the partition's first record of this fetch
                    monitor.track_tp_end_offset(tp, self.highwater(tp))
                    count = 0
                served[tp] = count + 1
                if tp.topic in inbox_topics:
                    yield tp, Delivered.of_record(tp, record, generation_id, self)
                else:
                    yield tp, to_message(tp, record)
            else:  # paused since the fetch: this record and the rest of its partition's are dropped
                stopped.add(tp)
        if halted or stopped:
            await self._seek_back_unserved(records, served)

    async def _seek_back_unserved(self, records: Mapping[TP, list[Any]], served: dict[TP, int]) -> None:
        """Records fetched and not delivered (the flow stopped, or their partition was paused,
        since the fetch): Faust drops them and counts on the seek to the committed offset at the
        end of the rebalance to fetch them again, but that seek does not cover a table's changelog
        partitions. A recovery that sought its changelog partitions, and whose first records were
        fetched just before it resumed the flow, lost them that way and waited for them for good
        (README, "No event lost in a rebalance", case 6). So their partitions are sought back to
        them, unless another seek moved them since."""
        dropped = unserved(records, served)
        if not dropped:
            return
        try:
            sought = await cast(FairConsumerThread, self._thread).seek_back(dropped)
        except Exception as exc:  # the consumer stopping, say: the rebalance's own seeks remain
            self.log.warning("could not seek back to records dropped unseen: %r", exc)
            return
        if sought:
            self.log.info("fetched records dropped unseen (the flow stopped or the partition was "
                          "paused): %s sought back to them", ", ".join(
                              f"{tp.topic}[{tp.partition}]@{dropped[tp][0]}" for tp in sorted(sought)))

    async def _hand_over(self, inbox: Inbox | None, batch: list[Delivered],
                         wait_for_room: bool = True) -> list[Delivered]:
        """Give `batch` to the inbox (a full inbox waits: backpressure on fetching), first waiting
        for room in flight unless a message of another topic is next; the new, empty batch."""
        assert inbox is not None
        if wait_for_room:
            await self._room_in_flight()
        await inbox.put(batch)
        return []

    async def _room_in_flight(self) -> None:
        """Wait while more than MAX_IN_FLIGHT delivered messages are not acked yet: events are
        acked only after the flush that writes their changes, and without this bound a fast fetch
        outran the flushes (one flush took 200,000 events and held the loop for seconds). Not
        while a rebalance is under way: its recovery needs this loop to go on."""
        generation = self.app.consumer_generation_id
        while (len(self._unacked_messages) > MAX_IN_FLIGHT and not self.suspend_flow.is_set()
               and self.app.consumer_generation_id == generation and not self.should_stop):
            await asyncio.sleep(IN_FLIGHT_POLL_S)

    async def wait_empty(self) -> None:
        """At shutdown and when partitions are revoked, Faust waits for every message in flight to
        be acked, committing as they are, with no bound (a message that never finished kept a
        worker from ever stopping). Here the wait ends after the app's shutdown timeout, or at once
        when the agent has died; what is still in flight then is left uncommitted, for the next
        owner to redo. When the worker is stopping (not in a mere rebalance), the whole stop is
        bounded too: past the timeout and a grace, the process exits."""
        timeout_s = float(getattr(self.app, "shutdown_timeout_s", 30.0))
        agent_state = getattr(self.app, "agent_state", None)
        if self.app.should_stop:
            arm_hard_exit(timeout_s + HARD_EXIT_GRACE_S)
        deadline = time.monotonic() + timeout_s
        while self._unacked_messages and time.monotonic() < deadline:
            if agent_state is not None and agent_state.failure is not None:
                break
            await self.commit()
            if not self._unacked_messages:
                break
            await self._wait_for_ack(timeout=min(1.0, max(0.01, deadline - time.monotonic())))
            self._clean_unacked_messages()
        left = sum(1 for message in self._unacked_messages if not message.acked)
        if left:
            self.log.warning("%d events still in flight: left uncommitted, to be redone", left)
        else:
            self.log.info("every event in flight finished; committing")
        await self.commit_and_end_transactions()

    def ack_delivered(self, messages: list[Any]) -> None:
        """Faust's ack (`Message.ack`, then `Consumer.ack`) of many messages the drain loop
        delivered, in one step under Faust's lock: the same bookkeeping, without three nested
        calls and two lock acquisitions per message (3% of a worker's CPU). As every ack here
        (streams/engine/gaps.py), a message the loop did not deliver (not `tracked`) is not acked.
        The messages are `Delivered` (streams/engine/delivery.py): no refcount of Faust's channels."""
        committed_offsets, acked_index, acked = self._committed_offset, self._acked_index, self._acked
        unacked = self._unacked_messages
        with ack_lock:
            try:
                for message in messages:
                    if message.acked or not message.tracked:
                        continue
                    message.acked = True
                    tp, offset = message.tp, message.offset
                    committed = committed_offsets[tp]
                    if (committed is None or offset >= committed) and offset not in acked_index[tp]:
                        unacked.discard(message)
                        acked_index[tp].add(offset)
                        acked[tp].append(offset)
                        self._n_acked += 1
                self._in_flight.settle({message.tp for message in messages},
                                       self.app.consumer_generation_id)
            finally:
                notify(self._waiting_for_ack)

    def _filter_committable_offsets(self, tps: Any) -> dict[TP, int]:
        """Faust's offsets to commit, each capped below its partition's first message in flight."""
        self._in_flight_floor = self._first_in_flight()
        try:
            return dict(super()._filter_committable_offsets(tps))
        finally:
            self._in_flight_floor = {}

    def _first_in_flight(self) -> dict[TP, int]:
        """Per partition, the lowest offset delivered in this generation and not acked yet."""
        return self._in_flight.floor(self.app.consumer_generation_id)

    def _new_offset(self, tp: TP) -> int | None:
        """Faust's run of acked offsets, with the acks at and above `floor` held back for later."""
        floor = self._in_flight_floor.get(tp)
        if floor is None:
            return super()._new_offset(tp)
        acked = self._acked[tp]
        held = [offset for offset in acked if offset >= floor]  # wait for the message at `floor`
        if held:
            acked[:] = [offset for offset in acked if offset < floor]
        try:
            new = super()._new_offset(tp) if acked else None
        finally:
            if held:
                acked.extend(held)
                acked.sort()
        return None if new is None else min(new, floor)


def committed_offset(consumer: Any, tp: TP) -> int:
    """The offset this worker last committed for `tp` (0 before its first commit)."""
    return int(getattr(consumer, "_committed_offset", {}).get(tp) or 0)


class Transport(driver.Transport):
    Consumer = Consumer


class EngineApp(faust.App):
    """Faust's app on this transport (Faust builds its transport in a private hook). Messages of
    the topics of `inbox` (set with `deliver_in_batches`) reach it in lists, not through Faust's
    conductor (streams/engine/delivery.py)."""

    inbox: Inbox | None = None
    #: how long a fetch may wait to gather records while events flow (0: Faust's fetches)
    fetch_gather_ms: int = 0

    def deliver_in_batches(self, topics: set[str]) -> Inbox:
        """From now on, fetched messages of `topics` go to the returned inbox."""
        self.inbox = Inbox(topics, on_taken=self._stream_took)
        return self.inbox

    def _stream_took(self, batch: list[Delivered]) -> None:
        """Tell Faust's monitor the agent took events of these partitions, as Faust's stream does
        per event: its consumer checks every few seconds, and a partition with a backlog whose
        stream it never saw take an event got an ERROR line ("Stream has not started processing")
        each time, from five minutes after the start on (6,000 lines in a million-order run)."""
        inbound = self.monitor.stream_inbound_time
        now = time.monotonic()
        for tp in {delivered.message.tp for delivered in batch}:
            inbound[tp] = now

    def _new_transport(self) -> Any:
        return Transport(self.conf.broker_consumer, self)


class RawBytes(faust.Schema):
    """Key and value exactly as Kafka delivered them (bytes, or None)."""

    def loads_key(self, app: Any, message: Any, *, loads: Any = None, serializer: Any = None) -> Any:
        return message.key

    def loads_value(self, app: Any, message: Any, *, loads: Any = None, serializer: Any = None) -> Any:
        return message.value
