"""What happens to one event of one order, with I/O: table, effects, retries, dead letters.

Runs inside the order's lane (so one order's events never interleave) and inside the Kafka event's
context (so every table write lands in that event's changelog partition). It decides nothing: the
decisions are data from `streams.core.decisions` (the order after them, its letters, notices,
change records and counts), which the processor carries out: reading and saving the order, calling
the effects a decision asks for, sending what it produced.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from streams.core import machine as m
from streams.core.deadletters import DeadLetter, Source, dead_letter
from streams.core.decisions import Answer, Decider, Decision, Policy, Steps
from streams.core.lifecycle import Lifecycle
from streams.core.outcomes import EffectResult
from streams.core.retry import Backoff
from streams.core.stats import PartitionStats
from streams.index import Due, due_ms
from streams.lanes import Work

__all__ = ["EventJob", "Policy", "Processor"]

log = logging.getLogger(__name__)

SendDeadLetter = Callable[[DeadLetter], Awaitable[None]]
SendRetryNotice = Callable[[m.Retry, int], Awaitable[None]]
SendChange = Callable[[m.ChangeRecord], None]


class ClosedStore(Protocol):
    """Markers of removed orders: `streams.closed.ClosedOrders` in a worker, a dict in tests."""

    def get(self, order_id: str) -> m.ClosedMarker | None: ...
    def put(self, marker: m.ClosedMarker) -> None: ...
    def drop(self, order_id: str) -> None: ...


class Store(Protocol):
    """Where orders live: `streams.state.OrderStore` in a worker, a dict-backed fake in unit tests."""

    def get(self, order_id: str) -> m.Order | None: ...
    def put(self, order: m.Order) -> None: ...
    def remove(self, order: m.Order) -> None:
        """Remove a finished order (a tombstone)."""


class Index(Protocol):
    """The orders' ordered entries: `streams.index.OrderIndex`."""

    def sync(self, order: m.Order, before: m.Order | None) -> None:
        """Make the order's client, due and stuck entries say what the order says."""

    def look(self, order: m.Order) -> None:
        """`sync(order, order)` when the order is read to take an event (free once known right)."""

    def remove(self, order: m.Order) -> None: ...
    def reschedule(self, order_id: str, old: float | None, new: float | None) -> None: ...
    def drop_due(self, entry: Due) -> None: ...


class EffectCaller(Protocol):
    """`streams.effects.Effects` in a worker, a scripted fake in unit tests."""

    @property
    def enabled(self) -> bool: ...
    async def call(self, effect: str, event: m.Event) -> EffectResult: ...


class Acks(Protocol):
    """`streams.acks.FlushThenAck`: acks an event after the flush that writes its changes."""

    def done(self, event: Any) -> None: ...


class EventJob(Work):
    """One event's job in its order's lane: `Processor.handle_event`, then the event's ack (by
    `acks`, or by `finish` when the event was one of several messages acked together)."""

    def __init__(self, processor: Processor, envelope: m.Event, source: Source, event: Any,
                 acks: Acks, finish: Callable[[], None] | None = None) -> None:
        super().__init__(event)
        self.processor = processor
        self.envelope = envelope
        self.source = source
        self.acks = acks
        self.finish = finish

    def run(self) -> Awaitable[None]:
        return self.processor.handle_event(self.envelope, self.source)

    def done(self) -> None:
        if self.finish is None:
            self.acks.done(self.event)
        else:
            self.finish()


@dataclass
class Processor:
    store: Store
    lifecycle: Lifecycle
    policy: Policy
    effects: EffectCaller
    backoff: Backoff
    index: Index
    send_dead_letter: SendDeadLetter
    send_retry_notice: SendRetryNotice
    stats: PartitionStats = field(default_factory=PartitionStats)
    closed: ClosedStore | None = None  # markers of removed orders (None: orders are never removed)
    clock: Callable[[], float] = time.time
    #: called with seconds from an event's `occurred_at` to its application
    observe_latency: Callable[[float], None] = field(default=lambda _seconds: None)
    #: called with the change-feed record of every applied transition (held until the flush)
    send_change: SendChange = field(default=lambda _record: None)

    decider: Decider = field(init=False)

    def __post_init__(self) -> None:
        self.decider = Decider(self.lifecycle, self.policy, self.backoff,
                               effects_enabled=self.effects.enabled, removes=self.closed is not None)

    @property
    def counts(self) -> Counter[str]:
        """Everything counted by this process, over all partitions."""
        return self.stats.totals

    # -- entry points (each called inside the order's lane) -----------------------------------
    # `handle_*` isolate one message: anything unexpected ends as a `processing_error` letter and
    # the lane goes on. Only a failure to send that letter (Kafka itself failing) escapes.

    async def handle_event(self, event: m.Event, source: Source) -> None:
        try:
            await self.on_event(event, source)
        except Exception as exc:
            log.exception("event %s of order %s failed unexpectedly; dead-lettered",
                          event.get("event_id"), event.get("order_id"))
            await self.on_processing_error(event, source, exc)

    async def handle_due(self, entry: Due, source: Source) -> None:
        try:
            await self.on_due(entry, source)
        except Exception as exc:
            log.exception("timed work of order %s failed unexpectedly", entry.order_id)
            await self._on_timed_error(entry, source, exc)

    async def on_event(self, event: m.Event, source: Source) -> None:
        """A new event from orders.events."""
        now = self.clock()
        stored = self.store.get(event["order_id"])
        if stored is None and self.closed is not None:
            marker = self.closed.get(event["order_id"])
            if marker is not None:
                await self._on_closed(marker, event, source, now)
                return
        if stored is not None:
            self.index.look(stored)  # a crash may have landed the order without its entries
        decision = await self._run(self.decider.event(stored, event, source, now))
        if decision.notices or decision.letters:
            await self._carry_out(decision, source.partition)
        else:  # most decisions send nothing that waits: spares a coroutine
            self._record(decision, source.partition)
        if decision.changed:
            self._save(decision.order, source.partition, stored)

    async def on_due(self, entry: Due, source: Source) -> None:
        """A tick found this order due: its timed work (`Decider.due`), then it is saved or, when
        its retention ran out, removed."""
        stored = self.store.get(entry.order_id)
        now = self.clock()
        if stored is None:
            self._on_closed_due(entry, source, now)
            return
        due_at = stored.get("due_at")
        if due_at is None or due_ms(due_at) != entry.at_ms:
            self.index.drop_due(entry)  # the order moved on since this entry was written
            self.index.sync(stored, stored)
            return
        decision = await self._run(self.decider.due(stored, source, now))
        if decision.notices or decision.letters:
            await self._carry_out(decision, source.partition)
        else:  # most decisions send nothing that waits: spares a coroutine
            self._record(decision, source.partition)
        if decision.remove:
            self._remove(decision.order, stored, source.partition, now)
        else:
            self._save(decision.order, source.partition, stored, not_before=now)

    # -- carrying a decision out --------------------------------------------------------------

    async def _run(self, steps: Steps[Decision]) -> Decision:
        """Drive a decision: call each effect it asks for and send it the answer."""
        answer: Answer | None = None
        while True:
            try:
                request = steps.send(answer)  # type: ignore[arg-type]  # the first send is None
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            result = await self.effects.call(request.effect, request.event)
            answer = Answer(result, self.clock())

    async def _carry_out(self, decision: Decision, partition: int) -> None:
        """Count, observe, and send what the decision produced (letters and change records are
        held until the flush that writes the order: streams/outbox.py, streams/feed.py)."""
        self._record(decision, partition)
        for notice in decision.notices:
            await self.send_retry_notice(notice.retry, notice.partition)
        for letter in decision.letters:
            await self._send_letter(letter, partition)

    def _record(self, decision: Decision, partition: int) -> None:
        self.stats.count_all(partition, decision.counts)
        for seconds in decision.latencies:
            self.observe_latency(seconds)
        for record in decision.changes:
            self.send_change(record)

    async def _send_letter(self, letter: DeadLetter, partition: int) -> None:
        self.stats.count(partition, "dead_letters")
        self.stats.count(partition, f"dead_letters.{letter['reason']['kind']}")
        self.stats.dead_letter(letter)
        await self.send_dead_letter(letter)

    async def _on_timed_error(self, due: Due, source: Source, error: BaseException) -> None:
        """Timed work failed: the event it was for (the pending retry, else the oldest parked
        event) is dead-lettered, so the failure is not redone at every tick; with neither, the
        entry is dropped (the order is looked at again when an event changes it)."""
        order_id = due.order_id
        try:
            order = self.store.get(order_id)
        except Exception:  # the record itself is unreadable: nothing to dead-letter it with
            log.exception("order %s cannot be read; its timed work is skipped", order_id)
            order = None
        if not isinstance(order, dict) or not (order.get("retry") or order.get("parked")):
            self.index.drop_due(due)
            return
        retry, parked = order.get("retry"), order.get("parked") or []
        entry = retry if isinstance(retry, dict) else (parked[0] if parked else None)
        if isinstance(entry, dict) and isinstance(entry.get("event"), dict):
            await self.on_processing_error(entry["event"], Source.from_list(entry.get("source"), source),
                                           error)

    async def on_processing_error(self, event: m.Event, source: Source,
                                  error: BaseException) -> None:
        """Something unexpected broke while handling `event` (a bug, a hostile value that passed
        validation): it ends as one `processing_error` letter and the stream goes on. The failure is
        recorded on the order when the order can still be read and written; when even that fails
        (the order record itself may be what breaks), the letter is sent all the same."""
        message = f"{type(error).__name__}: {error}"[:1000]
        now = self.clock()
        letter = dead_letter(event, "processing_error", message, 1, source, now)
        try:
            stored = self.store.get(event["order_id"])
            if stored is not None and m.letter_sent(stored, letter["id"]):
                return  # a redo after a crash: this failure's letter was sent
            if stored is not None:
                order = m.fail(_without(stored, event), event, now, message, self.policy.limits)
                self._save(m.record_letter(order, letter["id"], now), source.partition, stored)
        except Exception:
            log.exception("recording the processing error of event %s on its order failed too",
                          event.get("event_id"))
        await self._send_letter(letter, source.partition)

    # -- retention of finished orders -------------------------------------------------------

    def _remove(self, order: m.Order, before: m.Order | None, partition: int, now: float) -> None:
        """The order leaves (a tombstone); a marker stays for the idempotency retention."""
        assert self.closed is not None
        self.store.remove(order)
        self.index.remove(order)
        expires = now + self.policy.retention_s
        self.closed.put({"order_id": order["order_id"], "client_id": order["client_id"],
                         "status": order["status"], "version": order["version"], "closed_at": now,
                         "letters": {}, "due_at": expires})
        self.index.reschedule(order["order_id"], None, expires)
        self.stats.changed(partition, before, None)
        self.stats.count(partition, "orders.removed")

    def _on_closed_due(self, entry: Due, source: Source, now: float) -> None:
        """The due entry of a removed order's marker: the marker goes once its time is up."""
        marker = self.closed.get(entry.order_id) if self.closed is not None else None
        if marker is None or self.closed is None:
            self.index.drop_due(entry)
            return
        expires = float(marker.get("closed_at", 0)) + self.policy.retention_s
        scheduled = marker.get("due_at")
        if now >= expires:
            self.closed.drop(entry.order_id)
            self.index.drop_due(entry)
        elif scheduled is None or due_ms(scheduled) != due_ms(expires):
            self.index.drop_due(entry)
            self.index.reschedule(entry.order_id, None, expires)
            self.closed.put({**marker, "due_at": expires})
        elif due_ms(scheduled) != entry.at_ms:
            self.index.drop_due(entry)

    async def _on_closed(self, marker: m.ClosedMarker, event: m.Event, source: Source,
                         now: float) -> None:
        """An event of a removed order: never a new order; one `order_closed` letter."""
        assert self.closed is not None
        self.stats.count(source.partition, "events")
        self.stats.count(source.partition, f"events.{event['type']}.closed")
        letter = self.decider.closed_event(marker, event, source, now)
        if letter is not None:  # the marker remembers the letter's id: a redo sends none
            self.closed.put({**marker, "letters": {**marker.get("letters", {}), letter["id"]: now}})
            await self._send_letter(letter, source.partition)

    def _save(self, order: m.Order, partition: int, before: m.Order | None,
              not_before: float | None = None) -> None:
        """Keep the order, with its entries (streams/index.py) and census. `not_before`: timed
        work never leaves an order due again at once (a safety net against a busy loop)."""
        settled = self.decider.settled(order, self.clock(), not_before)
        if settled is None:
            return  # nothing worth keeping (e.g. a lone rejected event of an unknown order)
        order, late = settled
        if late:
            log.warning("order %s is still due after its timed work; looked at again in 1 s",
                        order["order_id"])
        self.store.put(order)
        self.index.sync(order, before)
        self.stats.changed(partition, before, order)


def _without(order: m.Order, event: m.Event) -> m.Order:
    """The order no longer holding `event` as its pending retry or among its parked events: a
    failed event must not be tried again at the next tick."""
    event_id = event.get("event_id")
    retry = order.get("retry")
    if isinstance(retry, dict) and retry.get("event", {}).get("event_id") == event_id:
        order = {**order, "retry": None}
    parked = [p for p in order.get("parked", []) if p.get("event", {}).get("event_id") != event_id]
    return order if len(parked) == len(order.get("parked", [])) else {**order, "parked": parked}
