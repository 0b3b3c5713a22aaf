"""Status timeouts of the lifecycle: an order that stays too long in a status takes the timeout's
synthetic event (once, with a stable id, effects included) or is marked stuck until it moves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streams.core.lifecycle import DEFAULT, Lifecycle, StatusTimeout
from streams.effects import EffectResult, Outcome
from streams.errors import LifecycleError
from tests.fakes import ScriptedEffects
from tests.helpers import make_event
from tests.unit.test_processor import due_ids, feed, make_processor, run_due

TIMED = Lifecycle.build(DEFAULT.transitions, DEFAULT.final, [
    StatusTimeout("created", 1800.0, event="cancelled"),
    StatusTimeout("paid", 7200.0, event="cancelled"),
    StatusTimeout("shipped", 600.0, stuck=True),
])


def timed_processor(effects: ScriptedEffects | None = None):  # type: ignore[no-untyped-def]
    processor, store, recorder, clock = make_processor(effects, lifecycle=TIMED)
    return processor, store, recorder, clock


def test_an_unpaid_order_is_cancelled_after_its_timeout_once() -> None:
    processor, store, _, clock = timed_processor()
    feed(processor, [make_event("o1", "created"), make_event("o2", "created")])
    clock.now += 1799
    assert due_ids(processor, clock.now) == []
    feed(processor, [make_event("o2", "paid")], first_offset=5)  # o2 moved on in time
    clock.now += 2
    assert run_due(processor) == ["o1"]
    order = store.orders["o1"]
    assert (order["status"], order["version"]) == ("cancelled", 2)
    last = order["history"][-1]
    assert last["event_id"] == "timeout:o1:created:1" and last["type"] == "cancelled"
    assert store.orders["o2"]["status"] == "paid"
    assert processor.counts["timeouts.fired"] == 1
    clock.now += 10 * 1800
    run_due(processor)
    assert processor.counts["timeouts.fired"] == 2  # o2's paid timeout, never o1's again
    assert store.orders["o1"]["version"] == 2


def test_a_timeout_runs_the_effects_of_its_transition_with_its_stable_key() -> None:
    effects = ScriptedEffects()
    processor, store, _, clock = timed_processor(effects)
    feed(processor, [make_event("o1", "created"), make_event("o1", "paid")])
    clock.now += 7201
    run_due(processor)
    assert store.orders["o1"]["status"] == "cancelled"
    assert effects.calls[-1] == ("refunds", "timeout:o1:paid:2")


def test_a_timeout_whose_effect_fails_for_good_fires_no_second_time() -> None:
    effects = ScriptedEffects(EffectResult(Outcome.OK), EffectResult(Outcome.TERMINAL, "HTTP 400"))
    processor, store, recorder, clock = timed_processor(effects)
    feed(processor, [make_event("o1", "created"), make_event("o1", "paid")])
    clock.now += 7201
    run_due(processor)
    clock.now += 7201
    run_due(processor)
    assert store.orders["o1"]["status"] == "paid"
    assert [d["reason"]["kind"] for d in recorder.dead_letters] == ["effect_failed"]
    assert [c for c in effects.calls if c[0] == "refunds"] == [("refunds", "timeout:o1:paid:2")]


def test_a_timeout_behind_a_pending_retry_waits_its_turn() -> None:
    effects = ScriptedEffects(EffectResult(Outcome.TRANSIENT, "HTTP 503"))
    processor, store, _, clock = timed_processor(effects)
    feed(processor, [make_event("o1", "created"), make_event("o1", "paid")])  # paid: retry pending
    store.orders["o1"] = {**store.orders["o1"], "retry": {**store.orders["o1"]["retry"],
                                                          "due_at": clock.now + 5000}}
    clock.now += 1801
    run_due(processor)
    parked = store.orders["o1"]["parked"]
    assert [p["event"]["event_id"] for p in parked] == ["timeout:o1:created:1"]
    clock.now += 5000
    run_due(processor)  # the retry succeeds: paid; then the parked cancel applies (a refund)
    assert store.orders["o1"]["status"] == "cancelled"


def test_a_stuck_timeout_marks_the_order_until_it_moves() -> None:
    processor, store, _, clock = timed_processor()
    feed(processor, [make_event(o, k) for o in ("o1", "o2") for k in ("created", "paid", "shipped")])
    clock.now += 601
    run_due(processor)
    assert store.orders["o1"]["stuck"]["status"] == "shipped"
    assert processor.stats.census[0]["stuck"] == 2
    assert [o for o, _ in processor.index.stuck(0, 10)] == ["o1", "o2"]  # type: ignore[attr-defined]
    feed(processor, [make_event("o1", "delivered")], first_offset=20)
    assert "stuck" not in store.orders["o1"]
    assert processor.stats.census[0]["stuck"] == 1
    assert [o for o, _ in processor.index.stuck(0, 10)] == ["o2"]  # type: ignore[attr-defined]
    clock.now += 6000
    run_due(processor)
    assert processor.counts["timeouts.stuck"] == 2  # marked once


@pytest.mark.parametrize("timeouts, problem", [
    ([{"status": "created", "after_s": 10, "event": "shipped"}], "does not take 'shipped'"),
    ([{"status": "delivered", "after_s": 10, "stuck": True}], "final status never times out"),
    ([{"status": "nowhere", "after_s": 10, "stuck": True}], "no row reaches"),
    ([{"status": "paid", "after_s": 0, "stuck": True}], "positive number"),
    ([{"status": "paid", "after_s": "1h", "stuck": True}], "after_s must be a number"),
    ([{"status": "paid", "after_s": 5}], "either an event or"),
    ([{"status": "paid", "after_s": 5, "stuck": True}] * 2, "given twice"),
])
def test_a_bad_timeout_is_refused_at_start_up_with_the_reason(tmp_path: Path, timeouts: list,
                                                               problem: str) -> None:
    rows = [{"from": r.source, "event": r.event, "to": r.target} for r in DEFAULT.transitions]
    path = tmp_path / "lifecycle.json"
    path.write_text(json.dumps({"final": sorted(DEFAULT.final), "transitions": rows,
                                "timeouts": timeouts}))
    with pytest.raises(LifecycleError, match=problem):
        Lifecycle.from_json(path)
