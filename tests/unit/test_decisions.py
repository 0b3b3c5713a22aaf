"""The state machine's decisions as data: no loop, no table, no clock, no HTTP."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core import machine as m
from streams.core.deadletters import Source
from streams.core.decisions import Answer, CallEffect, Decider, Decision, Policy, drive
from streams.core.lifecycle import DEFAULT
from streams.core.machine import Limits, Order
from streams.core.outcomes import EffectResult, Outcome
from streams.core.retry import Backoff
from tests.helpers import make_event

NOW = 1_000_000.0
SOURCE = Source("orders.events", 3, 41)
DECIDER = Decider(DEFAULT, Policy(Limits(), park_timeout_s=60, retention_s=3600), Backoff(1.0, 8.0, 3))


def created(order_id: str = "o1") -> Order:
    decision = drive(DECIDER.event(None, make_event(order_id, "created"), SOURCE, NOW))
    return decision.order


def test_an_applied_event_is_the_new_order_its_change_record_and_its_counts() -> None:
    event = make_event("o1", "created")
    decision = drive(DECIDER.event(None, event, SOURCE, NOW))
    assert decision.changed
    assert (decision.order["status"], decision.order["version"]) == ("created", 1)
    assert [(c["event_id"], c["from"], c["to"], c["version"]) for c in decision.changes] == \
        [(event["event_id"], None, "created", 1)]
    assert decision.letters == [] and decision.notices == []
    assert decision.counts == {"events": 1, "events.created.apply": 1, "applied": 1}
    assert len(decision.latencies) == 1


def test_a_transition_with_an_effect_asks_for_it_and_applies_only_after_the_answer() -> None:
    order = created()
    paid = make_event("o1", "paid")
    steps = DECIDER.event(order, paid, SOURCE, NOW)
    assert next(steps) == CallEffect("shipments", paid)
    try:
        steps.send(Answer(EffectResult(Outcome.OK), NOW + 0.02))
    except StopIteration as done:
        decision: Decision = done.value
    assert decision.order["status"] == "paid"
    assert decision.changes[0]["at"] == "1970-01-12T13:46:40.020Z"  # the time the answer came


def test_a_transient_answer_is_a_retry_notice_and_no_change() -> None:
    order = created()
    paid = make_event("o1", "paid")
    decision = drive(DECIDER.event(order, paid, SOURCE, NOW),
                     {"shipments": EffectResult(Outcome.TRANSIENT, "HTTP 503")}, NOW)
    retry = decision.order["retry"]
    assert retry is not None and retry["attempts"] == 1 and retry["source"] == SOURCE.as_list()
    assert NOW + 0.5 <= retry["due_at"] <= NOW + 1.0  # the first backoff step, jittered
    assert [n.retry for n in decision.notices] == [retry] and decision.notices[0].partition == 3
    assert decision.order["status"] == "created" and decision.changes == []
    assert decision.counts["retries.scheduled"] == 1


def test_a_terminal_answer_is_one_letter_recorded_on_the_order_and_none_on_a_redo() -> None:
    order = created()
    paid = make_event("o1", "paid")
    refused = {"shipments": EffectResult(Outcome.TERMINAL, "HTTP 422 no address")}
    decision = drive(DECIDER.event(order, paid, SOURCE, NOW), refused, NOW)
    [letter] = decision.letters
    assert letter["reason"] == {"kind": "effect_failed", "message": "HTTP 422 no address"}
    assert letter["id"] in decision.order["letters"]
    assert decision.order["failure"] is not None and paid["event_id"] not in decision.order["seen"]
    # a crash redid the event from the saved order: the same failure, no second letter
    redo = drive(DECIDER.event(decision.order, paid, SOURCE, NOW), refused, NOW)
    assert redo.letters == []


def test_a_duplicate_changes_nothing() -> None:
    event = make_event("o1", "created")
    order = drive(DECIDER.event(None, event, SOURCE, NOW)).order
    decision = drive(DECIDER.event(order, event, SOURCE, NOW + 1))
    assert not decision.changed and decision.counts["duplicates"] == 1
    assert decision.changes == [] and decision.letters == []


def test_a_parked_event_is_applied_by_the_event_it_waited_for() -> None:
    shipped = make_event("o1", "shipped")
    parked = drive(DECIDER.event(None, shipped, SOURCE, NOW)).order
    assert parked["status"] is None and len(parked["parked"]) == 1
    order = drive(DECIDER.event(parked, make_event("o1", "created"), SOURCE, NOW)).order
    decision = drive(DECIDER.event(order, make_event("o1", "paid"), SOURCE, NOW))
    assert [c["to"] for c in decision.changes] == ["paid", "shipped"]
    assert decision.order["parked"] == []


def test_an_impossible_event_is_a_rejected_letter() -> None:
    order = drive(DECIDER.event(created(), make_event("o1", "cancelled"), SOURCE, NOW)).order
    decision = drive(DECIDER.event(order, make_event("o1", "paid"), SOURCE, NOW))
    assert [letter["reason"]["kind"] for letter in decision.letters] == ["rejected"]
    assert decision.order["status"] == "cancelled"


def test_at_its_due_time_a_parked_event_times_out_into_a_letter() -> None:
    parked = drive(DECIDER.event(created(), make_event("o1", "shipped"), SOURCE, NOW)).order
    early = drive(DECIDER.due(parked, SOURCE, NOW + 59))
    assert early.letters == [] and len(early.order["parked"]) == 1
    late = drive(DECIDER.due(parked, SOURCE, NOW + 60))
    assert [letter["reason"]["kind"] for letter in late.letters] == ["park_timeout"]
    assert late.order["parked"] == [] and not late.remove


def test_a_settled_order_carries_its_next_due_time() -> None:
    parked = drive(DECIDER.event(created(), make_event("o1", "shipped"), SOURCE, NOW)).order
    settled = DECIDER.settled(parked, NOW)
    assert settled is not None and settled[0]["due_at"] == NOW + 60 and not settled[1]
    # timed work that would leave it due at once is looked at again a second later
    again = DECIDER.settled(parked, NOW + 61, not_before=NOW + 61)
    assert again is not None and again[0]["due_at"] == NOW + 62 and again[1]


@settings(max_examples=2000, deadline=None)
@given(st.floats(min_value=0, max_value=4e9, allow_nan=False)
       | st.builds(lambda ms, off: ms / 1000 + off, st.integers(0, 4 * 10**12),  # and times about
                   st.sampled_from([-6e-7, -5e-7, -4e-7, 4e-7, 5e-7, 6e-7])))  # half a µs off a ms
def test_times_are_written_as_datetime_writes_them(epoch: float) -> None:
    """The formatted time is shared within a millisecond (`rfc3339`): it must be the text datetime
    gives for every time in it, rounding at the microsecond as datetime does."""
    expected = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert m.rfc3339(epoch) == expected
    assert m.rfc3339(epoch) == expected  # the second time from the shared text


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 4 * 10**9), st.lists(st.integers(0, 3_000_000), min_size=1, max_size=50))
def test_times_in_the_same_seconds_are_written_as_datetime_writes_them(second: int,
                                                                        micros: list[int]) -> None:
    """One after another, as a worker formats them: milliseconds of one second share its text."""
    for micro in sorted(micros):
        epoch = second + micro / 1_000_000
        expected = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
        assert m.rfc3339(epoch) == expected.replace("+00:00", "Z")


def _expire_ids_by_the_rule(order: Order, now: float, retention_s: float) -> Order:
    """The rule as first written (one pass over every id): what the faster `expire_ids` must keep."""
    held = {e["event"]["event_id"] for e in order["parked"]}
    if order["retry"] is not None:
        held.add(order["retry"]["event"]["event_id"])
    ids = {k: t for k, t in order["seen"].items() if now - t < retention_s or k in held}
    letters = order.get("letters", {})
    kept = {k: t for k, t in letters.items() if now - t < retention_s}
    return {**order, "seen": ids, "letters": kept}


def _id_due_by_the_rule(order: Order, retention_s: float) -> float | None:
    held = {e["event"]["event_id"] for e in order["parked"]}
    if order["retry"] is not None:
        held.add(order["retry"]["event"]["event_id"])
    times = [t for k, t in order["seen"].items() if k not in held] + list(order.get("letters", {}).values())
    return min(times) + retention_s if times else None


IDS = st.sampled_from([f"e{n}" for n in range(8)])
AGES = st.floats(min_value=0, max_value=200)


@given(seen=st.dictionaries(IDS, AGES, max_size=8), letters=st.dictionaries(IDS, AGES, max_size=3),
       parked=st.lists(IDS, max_size=3, unique=True), retry=st.none() | IDS)
def test_forgetting_ids_and_their_due_time_follow_the_rule(seen: dict[str, float], letters: dict[str, float],
                                                           parked: list[str], retry: str | None) -> None:
    order = {**created(), "seen": {k: NOW - age for k, age in seen.items()},
             "letters": {k: NOW - age for k, age in letters.items()},
             "parked": [{"event": make_event("o1", "paid", event_id=k), "parked_at": NOW} for k in parked],
             "retry": None if retry is None else {"event": make_event("o1", "paid", event_id=retry),
                                                  "due_at": NOW + 5, "attempts": 1, "reason": "x"}}
    expired, expected = m.expire_ids(order, NOW, 100.0), _expire_ids_by_the_rule(order, NOW, 100.0)
    assert (expired["seen"], expired.get("letters", {})) == (expected["seen"], expected["letters"])
    timing = m.Timing(park_timeout_s=10_000, id_retention_s=100.0)
    others = [t for t in ([NOW + 10_000] if parked else []) + ([NOW + 5] if retry is not None else [])]
    id_due = _id_due_by_the_rule(order, 100.0)
    assert m.next_due(order, timing) == min(others + ([] if id_due is None else [id_due]), default=None)
