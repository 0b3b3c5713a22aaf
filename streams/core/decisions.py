"""What an order does with an event, or at its due time, as data: the new order, the dead letters,
the retry notices, the change records, the counts. The processor (streams/processor.py) only
reads and writes the order and carries a decision out.

An effect's answer is the one input a decision cannot compute: a decision that needs one yields a
`CallEffect` and is sent back the `Answer` (the result and the time it came). A decision is a
generator, sans I/O as h11 is, so every path of the state machine runs in a test without a loop,
a table or a clock.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from streams.core import machine as m
from streams.core.deadletters import DeadLetter, Source, dead_letter
from streams.core.lifecycle import Lifecycle, Transition
from streams.core.outcomes import EffectResult, Outcome
from streams.core.retry import Backoff

T = TypeVar("T")
Letter = DeadLetter
Change = m.ChangeRecord


# The classes made for every event or effect call write their own `__init__`: compiled by mypyc,
# a dataclass keeps the `__init__` the dataclasses module generates, which runs as Python (three
# to four times the cost of a compiled one). Not frozen for the same reason (a frozen class's
# `__init__` must go through `object.__setattr__`); `unsafe_hash` keeps them hashable as before.


@dataclass(unsafe_hash=True)
class CallEffect:
    """Call `effect` for `event`, and send the decision its `Answer`."""

    effect: str
    event: m.Event

    def __init__(self, effect: str, event: m.Event) -> None:
        self.effect = effect
        self.event = event


@dataclass(unsafe_hash=True)
class Answer:
    result: EffectResult
    now: float  # when the answer came: what the decision goes on with

    def __init__(self, result: EffectResult, now: float) -> None:
        self.result = result
        self.now = now


#: A decision in the making: it yields effect calls, is sent their answers, returns its value.
Steps = Generator[CallEffect, Answer, T]


@dataclass
class Policy:
    limits: m.Limits
    park_timeout_s: float
    retention_s: float
    release_parked_on_failure: bool = True
    finished_retention_s: float = 0.0  # 0: finished orders are kept forever
    timing: m.Timing = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # made once: it is read for every order saved (a policy does not change in a worker); a
        # `cached_property` never caches on a compiled class (no instance `__dict__`)
        self.timing = m.Timing(self.park_timeout_s, self.finished_retention_s, self.retention_s)


@dataclass(frozen=True)
class Notice:
    """A retry was scheduled: the notice for the retry topic, on the partition of its event."""

    retry: m.Retry
    partition: int


@dataclass
class Decision:
    """What to carry out. `order` is the order after the decision; `changed` False: nothing to
    save (a duplicate). `remove`: the order's retention ran out (timed work only)."""

    order: m.Order
    now: float  # the time the decision last knew (it moves with each effect's answer)
    changed: bool = True
    remove: bool = False
    letters: list[Letter] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)  # occurred_at to applied, per applied event

    def __init__(self, order: m.Order, now: float, changed: bool = True, remove: bool = False) -> None:
        self.order = order
        self.now = now
        self.changed = changed
        self.remove = remove
        self.letters = []
        self.notices = []
        self.changes = []
        self.counts = {}
        self.latencies = []

    def count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n


@dataclass(frozen=True)
class Decider:
    """The state machine's rules for a worker: its lifecycle, policy, backoff, and whether effects
    are called at all (no effects URL: transitions apply without them)."""

    lifecycle: Lifecycle
    policy: Policy
    backoff: Backoff
    effects_enabled: bool = True
    removes: bool = False  # finished orders leave after their retention (markers are kept)

    # -- the two entry points -------------------------------------------------------------------

    def event(self, stored: m.Order | None, event: m.Event, source: Source, now: float) -> Steps[Decision]:
        """A new event of the order (`stored` None: an order never seen)."""
        order = stored if stored is not None else m.new_order(event, now)
        order = m.expire_ids(order, now, self.policy.retention_s)
        decision = Decision(order, now)
        decision.count("events")
        taken = yield from self._take(decision, order, event, source)
        if taken is None:
            decision.changed = False
        else:
            decision.order = taken
        return decision

    def due(self, order: m.Order, source: Source, now: float) -> Steps[Decision]:
        """The order's due time came: fire its retry, time out its parked events and its status,
        forget expired ids, and say whether its retention ran out."""
        decision = Decision(order, now)
        retry = order["retry"]
        if retry is not None and retry["due_at"] <= now:
            event = retry["event"]
            origin = Source.from_list(retry.get("source"), source)  # where the event came in
            order = {**order, "retry": None}
            decision.count("retries.fired")
            row = self.lifecycle.step(order["status"], event["type"])
            if row is None:  # cannot happen while the retry holds the order; stay safe
                order = self._reject(decision, order, event, origin)
            else:
                order = yield from self._attempt(decision, order, event, row, retry["attempts"] + 1,
                                                 origin)
            order = yield from self._drain(decision, order, source)
        order, expired = m.expire_parked(order, now, self.policy.park_timeout_s)
        for parked in expired:
            event = parked["event"]
            order = m.expire(order, event, now, self.policy.limits)
            order = self._dead_letter(
                decision, order, event, "park_timeout",
                f"status {order['status']!r} did not accept {event['type']!r} "
                f"within {self.policy.park_timeout_s:g}s", 1, Source.from_list(parked.get("source"), source))
        order = yield from self._time_out_status(decision, order, source, now)
        swept = m.expire_ids(order, now, self.policy.retention_s)
        if swept is not order:
            decision.count("ids.expired", len(order["seen"]) - len(swept["seen"]))
            order = swept
        decision.order = order
        decision.remove = self.due_for_removal(order, now)
        return decision

    # -- what an order is -----------------------------------------------------------------------

    def finished(self, order: m.Order) -> bool:
        return (order["status"] in self.lifecycle.final and not order["parked"]
                and order["retry"] is None)

    def due_for_removal(self, order: m.Order, now: float) -> bool:
        finished_at = order.get("finished_at")
        return (self.removes and self.policy.finished_retention_s > 0 and self.finished(order)
                and isinstance(finished_at, int | float)
                and now >= finished_at + self.policy.finished_retention_s)

    def settled(self, order: m.Order, now: float,
                not_before: float | None = None) -> tuple[m.Order, bool] | None:
        """The order as it is saved: stamped when it finished, with its next due time. None:
        nothing worth keeping (a lone rejected event of an unknown order). The flag says timed
        work left it due at once (`not_before`): it is looked at again in a second instead, a
        safety net against a busy loop."""
        if order["status"] is None and not order["parked"] and order["retry"] is None \
                and not order["history"]:
            return None
        if self.finished(order) and "finished_at" not in order:
            order = {**order, "finished_at": now}
        due = m.next_due(order, self.policy.timing, self.lifecycle)
        late = due is not None and not_before is not None and due <= not_before
        if late:
            assert not_before is not None
            due = not_before + 1.0
        if due != order.get("due_at"):
            order = {**order, "due_at": due}
        return order, late

    def closed_event(self, marker: Mapping[str, Any], event: m.Event, source: Source,
                     now: float) -> Letter | None:
        """An event of a removed order: its `order_closed` letter, None when the marker says it was
        sent (a redo)."""
        message = (f"order {event['order_id']} finished ({marker.get('status')}) and was removed "
                   f"at {m.rfc3339(float(marker.get('closed_at', 0)))}; its events are not taken")
        letter = dead_letter(event, "order_closed", message, 1, source, now)
        return None if letter["id"] in marker.get("letters", {}) else letter

    # -- steps ----------------------------------------------------------------------------------

    def _take(self, decision: Decision, order: m.Order, event: m.Event,
              source: Source) -> Steps[m.Order | None]:
        """The order after taking `event` (applied, parked or rejected, then its parked events
        drained); None: nothing changed (a duplicate)."""
        verdict, row = m.classify(order, event, self.lifecycle, self.policy.limits)
        decision.count(f"events.{event['type']}.{verdict.value}")
        if verdict is m.Verdict.DUPLICATE:
            decision.count("duplicates")
            return None
        if verdict is m.Verdict.PARK_FULL:
            # a new order with a full park cannot be: its letter's id goes unrecorded with it
            return self._dead_letter(decision, order, event, "park_full",
                                     f"order {event['order_id']} already has "
                                     f"{self.policy.limits.parked} parked events", 1, source)
        if verdict is m.Verdict.REJECT:
            order = self._reject(decision, order, event, source)
        elif verdict is m.Verdict.PARK:
            order = m.park(order, event, decision.now, source.as_list())
            decision.count("parked")
        else:
            assert row is not None
            order = yield from self._attempt(decision, order, event, row, 1, source)
        if not order["parked"]:
            return order  # nothing to drain (most events: spares a generator)
        return (yield from self._drain(decision, order, source))

    def _time_out_status(self, decision: Decision, order: m.Order, source: Source,
                         now: float) -> Steps[m.Order]:
        """The lifecycle's timeout of the order's status, when it ran out: its synthetic event
        (taken like any event: applied, or parked behind a pending retry), or the stuck mark.
        Fires once per status and version, whatever the outcome."""
        due = m.timeout_due(order, self.lifecycle)
        if due is None or due[0] > now:
            return order
        timeout = due[1]
        if timeout.stuck:
            decision.count("timeouts.stuck")
            return m.mark_stuck(order, now)
        decision.count("timeouts.fired")
        event = m.timeout_event(order, timeout, now)
        order = {**order, "timed_out": m.timeout_key(order)}
        taken = yield from self._take(decision, order, event, source)
        return taken if taken is not None else order

    def _attempt(self, decision: Decision, order: m.Order, event: m.Event, row: Transition,
                 attempts: int, source: Source) -> Steps[m.Order]:
        """Run the transition's effects, then apply it; on failure schedule a retry or fail."""
        if row.effects and self.effects_enabled:
            for effect in row.effects:
                answer = yield CallEffect(effect, event)
                decision.now = answer.now
                result = answer.result
                if result.outcome is Outcome.OK:
                    continue
                return self._failed(decision, order, event, result, attempts, source)
        return self._apply(decision, order, event, row)

    def _apply(self, decision: Decision, order: m.Order, event: m.Event, row: Transition) -> m.Order:
        decision.count("applied")
        occurred = m.parse_time(event["occurred_at"])
        if occurred is not None:
            decision.latencies.append(max(0.0, decision.now - occurred))
        applied = m.apply(order, event, row, decision.now, self.policy.limits)
        decision.changes.append(m.change(order, applied, event))
        return applied

    def _failed(self, decision: Decision, order: m.Order, event: m.Event, result: EffectResult,
                attempts: int, source: Source) -> m.Order:
        """An effect did not succeed: a retry, while the backoff allows one, else a failure."""
        now = decision.now
        if result.outcome is Outcome.TRANSIENT and not self.backoff.exhausted(attempts):
            delay = self.backoff.delay(attempts, result.retry_after_s)
            decision.count("retries.scheduled")
            order = m.schedule_retry(order, event, attempts, now + delay, result.message, now,
                                     source.as_list())
            retry = order["retry"]
            assert retry is not None  # just scheduled
            decision.notices.append(Notice(retry, source.partition))
            return order
        kind = "effect_failed" if result.outcome is Outcome.TERMINAL else "retries_exhausted"
        message = (result.message if kind == "effect_failed"
                   else f"{attempts} attempts; last: {result.message}")
        order = m.fail(order, event, now, message, self.policy.limits)
        order = self._dead_letter(decision, order, event, kind, message, attempts, source)
        if not self.policy.release_parked_on_failure:
            order = self._dead_letter_parked(decision, order, event, source)
        return order

    def _drain(self, decision: Decision, order: m.Order, source: Source) -> Steps[m.Order]:
        """Apply (or reject) parked events the order can now decide on, in arrival order."""
        while (taken := m.take_parked(order, self.lifecycle)) is not None:
            order, entry, verdict = taken
            event, origin = entry["event"], Source.from_list(entry.get("source"), source)
            if verdict is m.Verdict.REJECT:
                order = self._reject(decision, order, event, origin)
                continue
            row = self.lifecycle.step(order["status"], event["type"])
            assert row is not None
            order = yield from self._attempt(decision, order, event, row, 1, origin)
        return order

    def _reject(self, decision: Decision, order: m.Order, event: m.Event, source: Source) -> m.Order:
        reason = f"status {order['status']!r} can never take {event['type']!r}"
        decision.count("rejected")
        order = self._dead_letter(decision, order, event, "rejected", reason, 1, source)
        return m.reject(order, event, decision.now, reason, self.policy.limits)

    def _dead_letter_parked(self, decision: Decision, order: m.Order, failed: m.Event,
                            source: Source) -> m.Order:
        for entry in order["parked"]:
            order = m.forget(order, entry["event"])
            order = self._dead_letter(decision, order, entry["event"], "behind_failed_event",
                                      f"event {failed['event_id']} before it failed", 0,
                                      Source.from_list(entry.get("source"), source))
        return {**order, "parked": []}

    def _dead_letter(self, decision: Decision, order: m.Order, event: Any, kind: str, message: str,
                     attempts: int, source: Source) -> m.Order:
        """The failure's letter, unless the order already sent it (a redo after a crash); the order
        comes back with the letter's id recorded, to be saved with the failure."""
        letter = dead_letter(event, kind, message, attempts, source, decision.now)
        if m.letter_sent(order, letter["id"]):
            return order
        decision.letters.append(letter)
        return m.record_letter(order, str(letter["id"]), decision.now)


def drive(steps: Steps[T], answers: Mapping[str, EffectResult] | None = None, now: float = 0.0) -> T:
    """Run a decision without I/O: every effect answers from `answers` (by effect name), OK when
    not listed, at `now`. For tests and tools that want a decision's data."""
    answer: Answer | None = None
    while True:
        try:
            request = steps.send(answer)  # type: ignore[arg-type]  # the first send is None
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        result = (answers or {}).get(request.effect, EffectResult(Outcome.OK))
        answer = Answer(result, now)
