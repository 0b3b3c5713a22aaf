"""One failure, one dead letter: stable ids, no second letter when a crash redoes a message, and
anything unexpected while handling one event ends as a `processing_error` letter."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from streams.core.deadletters import MAX_RAW_BYTES, Source, dead_letter, encode, letter_id
from streams.core.lifecycle import DEFAULT, Lifecycle, Transition
from streams.effects import EffectResult, Outcome
from streams.tools.dlq import Letter, unique
from tests.fakes import ScriptedEffects
from tests.helpers import make_event
from tests.unit.test_processor import SOURCE, feed, make_processor, run_due


def redo(processor: Any, events: list[dict[str, Any]]) -> None:
    """What a crash after the flush but before the commit does: the same messages, again."""
    feed(processor, events)


def test_a_letter_id_names_the_failure_not_the_moment() -> None:
    event = make_event("o1", "paid")
    first = dead_letter(event, "rejected", "no", 1, SOURCE, now=1.0)
    again = dead_letter(event, "rejected", "no", 1, SOURCE, now=99.0)
    replayed = dead_letter(event, "rejected", "no", 1, Source(SOURCE.topic, 0, 7), now=99.0)
    assert first["id"] == again["id"] == letter_id("rejected", SOURCE, event["event_id"])
    assert replayed["id"] != first["id"]  # a replay comes back at a new offset: a new failure
    assert dead_letter(event, "park_timeout", "no", 1, SOURCE)["id"] != first["id"]


def test_a_redone_rejection_sends_no_second_letter() -> None:
    processor, store, recorder, _ = make_processor()
    events = [make_event("o1", k) for k in ("created", "cancelled", "paid")]
    feed(processor, events)
    redo(processor, events)
    assert [d["reason"]["kind"] for d in recorder.dead_letters] == ["rejected"]
    assert recorder.dead_letters[0]["id"] in store.orders["o1"]["letters"]


def test_a_redone_effect_failure_sends_no_second_letter() -> None:
    refusals = ScriptedEffects(*[EffectResult(Outcome.TERMINAL, "HTTP 400")] * 2)
    processor, _, recorder, _ = make_processor(refusals)
    events = [make_event("o1", "created"), make_event("o1", "paid")]
    feed(processor, events)
    redo(processor, events)
    assert [d["reason"]["kind"] for d in recorder.dead_letters] == ["effect_failed"]


def test_a_park_timeout_letter_keeps_the_parked_event_s_own_source() -> None:
    processor, _, recorder, clock = make_processor()
    feed(processor, [make_event("o1", "created"), make_event("o1", "shipped")])  # offsets 0, 1
    clock.now += 61
    run_due(processor, Source("orders.retry", 0, 500))  # fired by a tick
    letter = recorder.dead_letters[-1]
    assert letter["source"] == {"topic": SOURCE.topic, "partition": 0, "offset": 1}
    assert letter["id"] == letter_id("park_timeout", Source(SOURCE.topic, 0, 1),
                                     letter["event"]["event_id"])


class BrokenEffects:
    """Effects whose call fails with an error nobody expects (a bug): not an effect's outcome."""

    enabled = True

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def call(self, effect: str, event: dict[str, Any]) -> EffectResult:
        raise self.error


def test_an_unexpected_error_is_one_processing_error_letter_and_the_order_records_it() -> None:
    processor, store, recorder, _ = make_processor(BrokenEffects(KeyError("a bug")))
    feed(processor, [make_event("o1", "created")])
    paid = make_event("o1", "paid")  # created -> paid calls `shipments`, which breaks
    asyncio.run(processor.handle_event(paid, Source(SOURCE.topic, 0, 5)))
    asyncio.run(processor.handle_event(paid, Source(SOURCE.topic, 0, 5)))  # redone
    assert len(recorder.dead_letters) == 1
    letter = recorder.dead_letters[0]
    assert letter["reason"] == {"kind": "processing_error", "message": "KeyError: 'a bug'"}
    assert letter["event"] == paid
    order = store.orders["o1"]
    assert order["status"] == "created" and order["failure"]["event_id"] == paid["event_id"]
    assert paid["event_id"] not in order["seen"]  # released: a replay is processed


def test_a_processing_error_of_an_unknown_order_is_still_a_letter() -> None:
    creating_calls = Lifecycle.build(
        [Transition(None, "created", "created", ("shipments",)),
         *(row for row in DEFAULT.transitions if row.source is not None)], DEFAULT.final)
    processor, store, recorder, _ = make_processor(BrokenEffects(RuntimeError("boom")),
                                                   lifecycle=creating_calls)
    event = make_event("o9", "created")
    asyncio.run(processor.handle_event(event, SOURCE))
    assert [d["reason"]["kind"] for d in recorder.dead_letters] == ["processing_error"]
    assert recorder.dead_letters[0]["reason"]["message"] == "RuntimeError: boom"
    assert "o9" not in store.orders


def test_a_letter_of_an_oversized_message_keeps_its_head_and_says_so() -> None:
    raw = b"x" * (MAX_RAW_BYTES * 3)
    letter = dead_letter(raw, "invalid_event", "too big", 1, SOURCE)
    assert letter["event"] == "x" * MAX_RAW_BYTES
    assert f"first {MAX_RAW_BYTES:,} of {len(raw):,} bytes" in letter["reason"]["message"]


@pytest.mark.parametrize("raw", [b'{"a":' * 5000 + b"1" + b"}" * 5000, b'{"a": NaN}', b"\xff\xfe"])
def test_a_letter_of_a_hostile_message_is_text_and_encodes_to_strict_json(raw: bytes) -> None:
    letter = dead_letter(raw, "invalid_event", "bad", 1, SOURCE)
    assert isinstance(letter["event"], str)
    assert json.loads(encode(letter), parse_constant=lambda c: pytest.fail(c))["id"] == letter["id"]


def test_dlq_readers_count_a_repeated_failure_once() -> None:
    body = dead_letter(make_event("o1", "paid"), "rejected", "no", 1, SOURCE)
    other = dead_letter(make_event("o2", "paid"), "rejected", "no", 1, SOURCE)
    letters = [Letter(0, 1, body), Letter(0, 2, other), Letter(0, 3, dict(body))]
    assert [x.offset for x in unique(letters)] == [1, 2]
