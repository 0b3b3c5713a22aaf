"""What happens to one event of one order, with I/O: table, effects, retries, dead letters.

Runs inside the order's lane (so one order's events never interleave) and inside the Kafka event's
context (so every table write lands in that event's changelog partition). The decisions themselves
are the pure functions of `streams.core.machine`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from streams.core import machine as m
from streams.core.deadletters import Source, dead_letter
from streams.core.lifecycle import Lifecycle, Transition
from streams.core.retry import Backoff
from streams.core.stats import PartitionStats
from streams.effects import Effects, Outcome
from streams.index import Due, due_ms

log = logging.getLogger(__name__)

SendDeadLetter = Callable[[dict[str, Any]], Awaitable[None]]
SendRetryNotice = Callable[[m.Retry, int], Awaitable[None]]
SendChange = Callable[[dict[str, Any]], None]


class ClosedStore(Protocol):
    """Markers of removed orders: `streams.closed.ClosedOrders` in a worker, a dict in tests."""

    def get(self, order_id: str) -> dict[str, Any] | None: ...
    def put(self, marker: dict[str, Any]) -> None: ...
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

    def remove(self, order: m.Order) -> None: ...
    def reschedule(self, order_id: str, old: float | None, new: float | None) -> None: ...
    def drop_due(self, entry: Due) -> None: ...


@dataclass
class Policy:
    limits: m.Limits
    park_timeout_s: float
    retention_s: float
    release_parked_on_failure: bool = True
    finished_retention_s: float = 0.0  # 0: finished orders are kept forever

    @property
    def timing(self) -> m.Timing:
        return m.Timing(self.park_timeout_s, self.finished_retention_s, self.retention_s)


@dataclass
class Processor:
    store: Store
    lifecycle: Lifecycle
    policy: Policy
    effects: Effects
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

    @property
    def counts(self) -> Counter[str]:
        """Everything counted by this process, over all partitions."""
        return self.stats.totals

    # -- entry points (each called inside the order's lane) -----------------------------------
    # `handle_*` isolate one message: anything unexpected ends as a `processing_error` letter and
    # the lane goes on. Only a failure to send that letter (Kafka itself failing) escapes.

    async def handle_event(self, event: dict[str, Any], source: Source) -> None:
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

    async def on_event(self, event: dict[str, Any], source: Source) -> None:
        """A new event from orders.events."""
        now = self.clock()
        stored = self.store.get(event["order_id"])
        if stored is None and self.closed is not None:
            marker = self.closed.get(event["order_id"])
            if marker is not None:
                await self._on_closed(marker, event, source)
                return
        if stored is not None:
            self.index.sync(stored, stored)  # a crash may have landed the order without its entries
        self.stats.count(source.partition, "events")
        order = stored if stored is not None else m.new_order(event, now)
        order = m.expire_ids(order, now, self.policy.retention_s)
        taken = await self._take(order, event, source, now)
        if taken is not None:
            self._save(taken, source.partition, stored)

    async def _take(self, order: m.Order, event: dict[str, Any], source: Source,
                    now: float) -> m.Order | None:
        """The order after taking `event` (applied, parked or rejected, then its parked events
        drained); None: nothing changed (a duplicate)."""
        verdict, row = m.classify(order, event, self.lifecycle, self.policy.limits)
        partition = source.partition
        self.stats.count(partition, f"events.{event['type']}.{verdict.value}")
        if verdict is m.Verdict.DUPLICATE:
            self.stats.count(partition, "duplicates")
            return None
        if verdict is m.Verdict.PARK_FULL:
            # a new order with a full park cannot be: its letter's id goes unrecorded with it
            return await self._dead_letter(order, event, "park_full",
                                           f"order {event['order_id']} already has "
                                           f"{self.policy.limits.parked} parked events", 1, source)
        if verdict is m.Verdict.REJECT:
            order = await self._reject(order, event, source, now)
        elif verdict is m.Verdict.PARK:
            order = m.park(order, event, now, source.as_list())
            self.stats.count(partition, "parked")
        else:
            assert row is not None
            order = await self._attempt(order, event, row, 1, source)
        return await self._drain(order, source)

    async def on_due(self, entry: Due, source: Source) -> None:
        """A tick found this order due: fire its retry, time out its parked events and its status,
        forget expired ids, remove it when its retention ran out."""
        order_id = entry.order_id
        order = stored = self.store.get(order_id)
        now = self.clock()
        if order is None:
            self._on_closed_due(entry, source, now)
            return
        due_at = order.get("due_at")
        if due_at is None or due_ms(due_at) != entry.at_ms:
            self.index.drop_due(entry)  # the order moved on since this entry was written
            self.index.sync(order, order)
            return
        retry = order["retry"]
        if retry is not None and retry["due_at"] <= now:
            event = retry["event"]
            origin = Source.from_list(retry.get("source"), source)  # where the event came in
            order = {**order, "retry": None}
            self.stats.count(source.partition, "retries.fired")
            row = self.lifecycle.step(order["status"], event["type"])
            if row is None:  # cannot happen while the retry holds the order; stay safe
                order = await self._reject(order, event, origin, now)
            else:
                order = await self._attempt(order, event, row, retry["attempts"] + 1, origin)
            order = await self._drain(order, source)
        order, expired = m.expire_parked(order, now, self.policy.park_timeout_s)
        for parked in expired:
            event = parked["event"]
            order = m.expire(order, event, now, self.policy.limits)
            order = await self._dead_letter(
                order, event, "park_timeout",
                f"status {order['status']!r} did not accept {event['type']!r} "
                f"within {self.policy.park_timeout_s:g}s", 1, Source.from_list(parked.get("source"), source))
        order = await self._time_out_status(order, source, now)
        swept = m.expire_ids(order, now, self.policy.retention_s)
        if swept is not order:
            self.stats.count(source.partition, "ids.expired", len(order["seen"]) - len(swept["seen"]))
            order = swept
        if self._due_for_removal(order, now):
            self._remove(order, stored, source.partition, now)
            return
        self._save(order, source.partition, stored, not_before=now)

    async def _time_out_status(self, order: m.Order, source: Source, now: float) -> m.Order:
        """The lifecycle's timeout of the order's status, when it ran out: its synthetic event
        (taken like any event: applied, or parked behind a pending retry), or the stuck mark.
        Fires once per status and version, whatever the outcome."""
        due = m.timeout_due(order, self.lifecycle)
        if due is None or due[0] > now:
            return order
        timeout = due[1]
        if timeout.stuck:
            self.stats.count(source.partition, "timeouts.stuck")
            return m.mark_stuck(order, now)
        self.stats.count(source.partition, "timeouts.fired")
        event = m.timeout_event(order, timeout, now)
        order = {**order, "timed_out": m.timeout_key(order)}
        taken = await self._take(order, event, source, now)
        return taken if taken is not None else order

    # -- steps --------------------------------------------------------------------------------

    async def _attempt(self, order: m.Order, event: dict[str, Any], row: Transition,
                       attempts: int, source: Source) -> m.Order:
        """Run the transition's effects, then apply it; on failure schedule a retry or fail."""
        now = self.clock()
        if row.effects and self.effects.enabled:
            for effect in row.effects:
                result = await self.effects.call(effect, event)
                if result.outcome is Outcome.OK:
                    continue
                now = self.clock()
                if result.outcome is Outcome.TRANSIENT and not self.backoff.exhausted(attempts):
                    delay = self.backoff.delay(attempts, result.retry_after_s)
                    self.stats.count(source.partition, "retries.scheduled")
                    order = m.schedule_retry(order, event, attempts, now + delay, result.message, now,
                                             source.as_list())
                    retry = order["retry"]
                    assert retry is not None  # just scheduled
                    await self.send_retry_notice(retry, source.partition)
                    return order
                kind = "effect_failed" if result.outcome is Outcome.TERMINAL else "retries_exhausted"
                message = (result.message if kind == "effect_failed"
                           else f"{attempts} attempts; last: {result.message}")
                order = m.fail(order, event, now, message, self.policy.limits)
                order = await self._dead_letter(order, event, kind, message, attempts, source)
                if not self.policy.release_parked_on_failure:
                    order = await self._dead_letter_parked(order, event, source)
                return order
        self.stats.count(source.partition, "applied")
        now = self.clock()
        occurred = m.parse_time(event["occurred_at"])
        if occurred is not None:
            self.observe_latency(max(0.0, now - occurred))
        applied = m.apply(order, event, row, now, self.policy.limits)
        self.send_change(m.change(order, applied, event))
        return applied

    async def _drain(self, order: m.Order, source: Source) -> m.Order:
        """Apply (or reject) parked events the order can now decide on, in arrival order."""
        while (taken := m.take_parked(order, self.lifecycle)) is not None:
            order, entry, verdict = taken
            event, origin = entry["event"], Source.from_list(entry.get("source"), source)
            if verdict is m.Verdict.REJECT:
                order = await self._reject(order, event, origin, self.clock())
                continue
            row = self.lifecycle.step(order["status"], event["type"])
            assert row is not None
            order = await self._attempt(order, event, row, 1, origin)
        return order

    async def _reject(self, order: m.Order, event: dict[str, Any], source: Source,
                      now: float) -> m.Order:
        reason = f"status {order['status']!r} can never take {event['type']!r}"
        self.stats.count(source.partition, "rejected")
        order = await self._dead_letter(order, event, "rejected", reason, 1, source)
        return m.reject(order, event, now, reason, self.policy.limits)

    async def _dead_letter_parked(self, order: m.Order, failed: dict[str, Any],
                                  source: Source) -> m.Order:
        for entry in order["parked"]:
            order = m.forget(order, entry["event"])
            order = await self._dead_letter(order, entry["event"], "behind_failed_event",
                                            f"event {failed['event_id']} before it failed", 0,
                                            Source.from_list(entry.get("source"), source))
        return {**order, "parked": []}

    async def _dead_letter(self, order: m.Order, event: Any, kind: str, message: str,
                           attempts: int, source: Source) -> m.Order:
        """Send the failure's letter unless the order already sent it (a redo after a crash); the
        order comes back with the letter's id recorded, to be saved with the failure."""
        sent = await self._send_letter(order.get("letters", {}), event, kind, message, attempts, source)
        return order if sent is None else m.record_letter(order, sent, self.clock())

    async def _send_letter(self, sent_before: Mapping[str, float], event: Any, kind: str,
                           message: str, attempts: int, source: Source) -> str | None:
        """Send the letter and count it, unless its id is among those sent before; its id if sent."""
        letter = dead_letter(event, kind, message, attempts, source, self.clock())
        if letter["id"] in sent_before:
            return None
        self.stats.count(source.partition, "dead_letters")
        self.stats.count(source.partition, f"dead_letters.{kind}")
        self.stats.dead_letter(letter)
        await self.send_dead_letter(letter)
        return str(letter["id"])

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

    async def on_processing_error(self, event: dict[str, Any], source: Source,
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
        self.stats.count(source.partition, "dead_letters")
        self.stats.count(source.partition, "dead_letters.processing_error")
        self.stats.dead_letter(letter)
        await self.send_dead_letter(letter)

    # -- retention of finished orders -------------------------------------------------------

    def _finished(self, order: m.Order) -> bool:
        return (order["status"] in self.lifecycle.final and not order["parked"]
                and order["retry"] is None)

    def _due_for_removal(self, order: m.Order, now: float) -> bool:
        finished_at = order.get("finished_at")
        return (self.closed is not None and self.policy.finished_retention_s > 0
                and self._finished(order) and isinstance(finished_at, int | float)
                and now >= finished_at + self.policy.finished_retention_s)

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

    async def _on_closed(self, marker: dict[str, Any], event: dict[str, Any], source: Source) -> None:
        """An event of a removed order: never a new order; one `order_closed` letter."""
        assert self.closed is not None
        self.stats.count(source.partition, "events")
        self.stats.count(source.partition, f"events.{event['type']}.closed")
        message = (f"order {event['order_id']} finished ({marker.get('status')}) and was removed "
                   f"at {m.rfc3339(float(marker.get('closed_at', 0)))}; its events are not taken")
        letters = marker.get("letters", {})
        sent = await self._send_letter(letters, event, "order_closed", message, 1, source)
        if sent is not None:  # the marker remembers the letter's id: a redo sends none
            self.closed.put({**marker, "letters": {**letters, sent: self.clock()}})

    def _save(self, order: m.Order, partition: int, before: m.Order | None,
              not_before: float | None = None) -> None:
        """Keep the order, with its entries (streams/index.py) and census. `not_before`: timed
        work never leaves an order due again at once (a safety net against a busy loop)."""
        if order["status"] is None and not order["parked"] and order["retry"] is None \
                and not order["history"]:
            return  # nothing worth keeping (e.g. a lone rejected event of an unknown order)
        if self._finished(order) and "finished_at" not in order:
            order = {**order, "finished_at": self.clock()}
        due = m.next_due(order, self.policy.timing, self.lifecycle)
        if due is not None and not_before is not None and due <= not_before:
            log.warning("order %s is still due after its timed work; looked at again in 1 s",
                        order["order_id"])
            due = not_before + 1.0
        if due != order.get("due_at"):
            order = {**order, "due_at": due}
        self.store.put(order)
        self.index.sync(order, before)
        self.stats.changed(partition, before, order)


def _without(order: m.Order, event: dict[str, Any]) -> m.Order:
    """The order no longer holding `event` as its pending retry or among its parked events: a
    failed event must not be tried again at the next tick."""
    event_id = event.get("event_id")
    retry = order.get("retry")
    if isinstance(retry, dict) and retry.get("event", {}).get("event_id") == event_id:
        order = {**order, "retry": None}
    parked = [p for p in order.get("parked", []) if p.get("event", {}).get("event_id") != event_id]
    return order if len(parked) == len(order.get("parked", [])) else {**order, "parked": parked}
