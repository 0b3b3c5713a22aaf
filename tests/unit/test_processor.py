"""The processor's decisions, Kafka-free: a hypothesis test against the reference model, and the
idempotency, parking, retry and failure rules one by one."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.deadletters import Source
from streams.core.lifecycle import DEFAULT, Lifecycle
from streams.core.machine import Limits
from streams.core.retry import Backoff
from streams.effects import EffectResult, Outcome
from streams.engine.tables import BufferedTable
from streams.index import OrderIndex
from streams.lanes import Lanes
from streams.processor import EventJob, Policy, Processor
from tests.fakes import MemoryStore, Recorder, ScriptedEffects
from tests.helpers import make_event
from tests.reference import run_model

SOURCE = Source("orders.events", 0, 0)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def make_processor(effects: Any = None, park_limit: int = 100, release: bool = True,
                   max_attempts: int = 3, lifecycle: Lifecycle = DEFAULT, closed: Any = None,
                   finished_retention_s: float = 0.0,
                   ) -> tuple[Processor, MemoryStore, Recorder, Clock]:
    store, recorder, clock = MemoryStore(), Recorder(), Clock()
    effects = effects or ScriptedEffects()
    processor = Processor(
        store=store, lifecycle=lifecycle, closed=closed,
        policy=Policy(Limits(history=1000, parked=park_limit), park_timeout_s=60,
                      retention_s=3600, release_parked_on_failure=release,
                      finished_retention_s=finished_retention_s),
        effects=effects, backoff=Backoff(1.0, 8.0, max_attempts),
        index=OrderIndex(BufferedTable({})),
        send_dead_letter=recorder.dead_letter, send_retry_notice=recorder.retry, clock=clock,
        send_change=recorder.change,
    )
    return processor, store, recorder, clock


def due_ids(processor: Processor, now: float) -> list[str]:
    """Orders whose due entry a tick at `now` would hand to the lanes."""
    return [entry.order_id for entry in processor.index.due(0, now, 1000)]  # type: ignore[attr-defined]


def run_due(processor: Processor, source: Source = SOURCE) -> list[str]:
    """What a tick at the processor's clock does: the timed work of every order due."""
    entries = processor.index.due(0, processor.clock(), 1000)  # type: ignore[attr-defined]
    for entry in entries:
        asyncio.run(processor.handle_due(entry, source))
    return [entry.order_id for entry in entries]


def feed(processor: Processor, events: list[dict[str, Any]], first_offset: int = 0) -> None:
    """Each event as its own Kafka message (one offset after another)."""
    async def run() -> None:
        for offset, event in enumerate(events, start=first_offset):
            await processor.on_event(event, Source(SOURCE.topic, SOURCE.partition, offset))
    asyncio.run(run())


event_ids = st.sampled_from([f"e{i}" for i in range(12)])
event_types = st.sampled_from(sorted(DEFAULT.event_types))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(event_ids, event_types), max_size=25))
def test_processor_matches_the_reference_model(pairs: list[tuple[str, str]]) -> None:
    # an event id always names the same event: a repeat is a redelivery, not a new event
    types_by_id: dict[str, str] = {}
    events = []
    for event_id, kind in pairs:
        kind = types_by_id.setdefault(event_id, kind)
        events.append(make_event("o1", kind, event_id=event_id))
    processor, store, recorder, _ = make_processor()
    feed(processor, events)
    model = run_model(events, DEFAULT)

    order = store.get("o1")
    if order is None:
        assert model.version == 0 and not model.parked
        return
    assert order["status"] == model.status
    assert order["version"] == model.version
    applied = [h["event_id"] for h in order["history"] if h["outcome"] == "applied"]
    assert applied == model.applied
    assert len(applied) == len(set(applied))  # never applied twice
    assert [p["event"]["event_id"] for p in order["parked"]] == [e["event_id"] for e in model.parked]
    assert processor.counts["duplicates"] == model.duplicates
    rejected = [d["event"]["event_id"] for d in recorder.dead_letters]
    assert rejected == model.rejected
    # the change feed: one record per applied transition, in order, each with the order after it
    assert [c["event_id"] for c in recorder.changes] == model.applied
    assert [c["version"] for c in recorder.changes] == list(range(1, model.version + 1))
    assert [c["order"]["status"] for c in recorder.changes] == [c["to"] for c in recorder.changes]
    assert all(a["to"] == b["from"] for a, b in zip(recorder.changes, recorder.changes[1:], strict=False))


def test_the_same_event_three_times_is_applied_once() -> None:
    processor, store, _, _ = make_processor()
    created = make_event("o1", "created")
    feed(processor, [created, created, created])
    assert store.orders["o1"]["version"] == 1
    assert processor.counts["duplicates"] == 2


def test_an_early_event_is_parked_then_applied_in_order() -> None:
    processor, store, _, _ = make_processor()
    events = [make_event("o1", k) for k in ("created", "shipped", "delivered", "paid")]
    feed(processor, events[:3])
    assert store.orders["o1"]["status"] == "created"
    assert len(store.orders["o1"]["parked"]) == 2
    feed(processor, events[3:])
    order = store.orders["o1"]
    assert (order["status"], order["version"], order["parked"]) == ("delivered", 4, [])
    assert [h["type"] for h in order["history"]] == ["created", "paid", "shipped", "delivered"]


def test_an_impossible_event_is_rejected_recorded_and_dead_lettered() -> None:
    processor, store, recorder, _ = make_processor()
    feed(processor, [make_event("o1", k) for k in ("created", "cancelled", "paid")])
    order = store.orders["o1"]
    assert order["status"] == "cancelled" and order["version"] == 2
    assert order["history"][-1]["outcome"] == "rejected"
    assert recorder.dead_letters[-1]["reason"]["kind"] == "rejected"


def test_a_park_timeout_sends_the_event_to_the_dead_letters() -> None:
    processor, store, recorder, clock = make_processor()
    shipped = make_event("o1", "shipped")
    feed(processor, [make_event("o1", "created"), shipped])
    assert due_ids(processor, clock.now + 59) == []
    clock.now += 61
    assert due_ids(processor, clock.now) == ["o1"]
    run_due(processor)
    assert store.orders["o1"]["parked"] == []
    assert recorder.dead_letters[-1]["reason"]["kind"] == "park_timeout"
    assert recorder.dead_letters[-1]["event"] == shipped


def test_a_full_park_dead_letters_the_next_early_event() -> None:
    processor, store, recorder, _ = make_processor(park_limit=1)
    feed(processor, [make_event("o1", "created"), make_event("o1", "shipped"),
                     make_event("o1", "delivered")])
    assert len(store.orders["o1"]["parked"]) == 1
    assert recorder.dead_letters[-1]["reason"]["kind"] == "park_full"


def test_terminal_failure_releases_the_id_so_a_resubmission_is_processed() -> None:
    effects = ScriptedEffects(EffectResult(Outcome.TERMINAL, "HTTP 400"))
    processor, store, recorder, _ = make_processor(effects)
    paid = make_event("o1", "paid")
    feed(processor, [make_event("o1", "created"), paid])
    assert store.orders["o1"]["status"] == "created"
    assert store.orders["o1"]["failure"]["event_id"] == paid["event_id"]
    assert recorder.dead_letters[-1]["reason"]["kind"] == "effect_failed"
    feed(processor, [paid])  # fixed downstream, sent again with the same id
    assert store.orders["o1"]["status"] == "paid"
    assert store.orders["o1"]["failure"] is None


def test_a_transient_failure_holds_later_events_of_the_order_until_the_retry() -> None:
    effects = ScriptedEffects(EffectResult(Outcome.TRANSIENT, "HTTP 503"))
    processor, store, recorder, clock = make_processor(effects)
    feed(processor, [make_event("o1", "created"), make_event("o1", "paid"),
                     make_event("o1", "shipped"), make_event("o2", "created")])
    held = store.orders["o1"]
    assert held["status"] == "created" and held["retry"]["attempts"] == 1
    assert [p["event"]["type"] for p in held["parked"]] == ["shipped"]
    assert store.orders["o2"]["status"] == "created"  # other orders go on
    due_at = held["retry"]["due_at"]
    assert clock.now + 0.5 <= due_at <= clock.now + 1.0  # attempt 1: within [base/2, base]
    clock.now = due_at + 0.001  # entries are kept in whole milliseconds, rounded up
    assert due_ids(processor, clock.now) == ["o1"]
    run_due(processor)
    assert (store.orders["o1"]["status"], store.orders["o1"]["version"]) == ("shipped", 3)
    assert len(recorder.retries) == 1
    # the feed has the retried transition once, when it finally applied, then the one behind it
    assert [(c["order_id"], c["type"], c["version"]) for c in recorder.changes] == [
        ("o1", "created", 1), ("o2", "created", 1), ("o1", "paid", 2), ("o1", "shipped", 3)]


def test_running_out_of_attempts_dead_letters_and_releases_parked_events() -> None:
    effects = ScriptedEffects(*[EffectResult(Outcome.TRANSIENT, "HTTP 503")] * 3)
    processor, store, recorder, clock = make_processor(effects, max_attempts=3)
    feed(processor, [make_event("o1", "created"), make_event("o1", "paid"),
                     make_event("o1", "cancelled")])
    for _ in range(2):
        clock.now = store.orders["o1"]["retry"]["due_at"] + 0.001
        run_due(processor)
    order = store.orders["o1"]
    assert recorder.dead_letters[0]["reason"]["kind"] == "retries_exhausted"
    assert recorder.dead_letters[0]["attempts"] == 3
    assert order["status"] == "cancelled"  # the parked cancel was released ("release" policy)


def test_dead_letter_policy_sends_parked_events_after_the_failed_one() -> None:
    effects = ScriptedEffects(EffectResult(Outcome.TERMINAL, "HTTP 422"))
    processor, store, recorder, _ = make_processor(effects, release=False)
    feed(processor, [make_event("o1", "created"), make_event("o1", "shipped"),
                     make_event("o1", "paid")])
    assert [d["reason"]["kind"] for d in recorder.dead_letters] == [
        "effect_failed", "behind_failed_event"]
    assert store.orders["o1"]["parked"] == []


def test_event_ids_expire_after_the_retention_through_the_sweep() -> None:
    processor, store, _, clock = make_processor()
    created = make_event("o1", "created")
    feed(processor, [created])
    assert created["event_id"] in store.orders["o1"]["seen"]
    clock.now += 3599
    run_due(processor)
    assert created["event_id"] in store.orders["o1"]["seen"]
    clock.now += 2
    run_due(processor)
    assert store.orders["o1"]["seen"] == {}
    assert processor.counts["ids.expired"] == 1


class _KafkaEvent:
    """Stands for the Kafka message an event came in (weak-referenceable, as Faust's are; its own
    `.message`, as `Delivered`): the context the lanes set for the job's table writes."""

    def __init__(self, offset: int) -> None:
        self.offset = offset
        self.partition = 0
        self.message = self


class _Acks:
    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.acked: list[int] = []

    def done(self, event: Any) -> None:
        self.acked.append(event.offset)


class _SlowEffects(ScriptedEffects):
    """Answers after a few milliseconds, so a job waits for its effect in its lane."""

    async def call(self, effect: str, event: dict[str, Any]) -> EffectResult:
        await asyncio.sleep(0.005)
        return await super().call(effect, event)


def test_event_jobs_in_the_lanes_apply_each_orders_events_in_order_and_ack_each_once() -> None:
    """The agent's path (agents/orders.py): every event an `EventJob` in its order's lane. An
    order waiting for its effect holds its later events behind it while other orders go on, and
    every event is acked once, after it was applied."""
    effects = _SlowEffects()
    processor, store, _recorder, _clock = make_processor(effects=effects)
    acks = _Acks(store)
    kinds = ["created", "paid", "shipped", "delivered"]
    orders = [f"o{n}" for n in range(6)]

    async def main() -> None:
        lanes = Lanes(3)
        offset = 0
        for kind in kinds:
            for order_id in orders:
                event = make_event(order_id, kind)
                source = Source("orders.events", 0, offset)
                job = EventJob(processor, event, source, _KafkaEvent(offset), acks)
                await lanes.submit_work(order_id, job)
                offset += 1
        for _ in range(5000):
            if len(acks.acked) >= offset:
                break
            await asyncio.sleep(0.001)
        await lanes.stop()

    asyncio.run(main())
    assert sorted(acks.acked) == list(range(len(kinds) * len(orders))), "each event acked once"
    assert processor.counts["applied"] == len(kinds) * len(orders)
    assert processor.counts["parked"] == 0, "no event ran before the one ahead of it in its order"
    for order_id in orders:
        order = store.get(order_id)
        assert order is not None and order["status"] == "delivered" and order["version"] == len(kinds)
    assert sorted(event_id for _effect, event_id in effects.calls) == sorted(
        {event_id for _effect, event_id in effects.calls}), "one call per paid event"
    assert len(effects.calls) == len(orders)


def test_an_event_job_of_several_messages_acks_through_its_finish() -> None:
    """An event delivered with the messages Faust skipped before it is acked once all of them are
    done: its job calls the countdown it was given, not the acks."""
    processor, store, _recorder, _clock = make_processor()
    acks = _Acks(store)
    finished: list[str] = []
    job = EventJob(processor, make_event("o1", "created"), SOURCE, _KafkaEvent(7), acks,
                   finish=lambda: finished.append("counted down"))
    asyncio.run(job.run())  # type: ignore[arg-type]
    job.done()
    assert finished == ["counted down"] and acks.acked == []
    assert store.get("o1") is not None
