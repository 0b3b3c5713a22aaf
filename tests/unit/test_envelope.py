"""Each rule of the event envelope, through the one validate function."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from schemas.envelope import REQUIRED, OrderEvent, decode, id_problem, validate
from streams.core.lifecycle import DEFAULT
from streams.errors import InvalidEvent
from tests.helpers import make_event


def good() -> dict[str, Any]:
    return make_event("order-1", "created", payload={"amount": 10})


def test_a_valid_event_passes_and_keeps_unknown_fields() -> None:
    event = {**good(), "trace_id": "abc"}
    assert validate(event, "client-1", DEFAULT.event_types)["trace_id"] == "abc"


@pytest.mark.parametrize("name", REQUIRED)
def test_each_required_field_is_named_when_missing(name: str) -> None:
    event = good()
    del event[name]
    with pytest.raises(InvalidEvent, match=f"field `{name}` is missing"):
        validate(event)


@pytest.mark.parametrize("name", ["event_id", "order_id", "client_id"])
@pytest.mark.parametrize("value", ["", "x" * 129, 7, None])
def test_ids_are_strings_of_1_to_128_chars(name: str, value: object) -> None:
    with pytest.raises(InvalidEvent, match=f"`{name}`"):
        validate({**good(), name: value})


def test_ids_of_exactly_128_chars_pass() -> None:
    validate({**good(), "order_id": "o" * 128})


def test_type_must_belong_to_the_lifecycle() -> None:
    with pytest.raises(InvalidEvent, match="field `type` is 'teleported'"):
        validate({**good(), "type": "teleported"}, event_types=DEFAULT.event_types)


@pytest.mark.parametrize(
    "stamp", ["2026-11-22", "yesterday", "2026-11-22T10:00:00", "2026-13-01T00:00:00Z", 1700000000]
)
def test_occurred_at_must_be_rfc3339_with_zone(stamp: object) -> None:
    with pytest.raises(InvalidEvent, match="`occurred_at`"):
        validate({**good(), "occurred_at": stamp})


@pytest.mark.parametrize("stamp", ["2026-11-22T10:00:00Z", "2026-11-22T10:00:00.123+02:00"])
def test_rfc3339_variants_pass(stamp: str) -> None:
    validate({**good(), "occurred_at": stamp})


def test_payload_must_be_an_object_when_present() -> None:
    with pytest.raises(InvalidEvent, match="`payload`"):
        validate({**good(), "payload": [1, 2]})


@pytest.mark.parametrize("version", [2, "1", True, 1.0])
def test_schema_version_is_the_integer_1(version: object) -> None:
    with pytest.raises(InvalidEvent, match="`schema_version`"):
        validate({**good(), "schema_version": version})


def test_key_must_equal_client_id() -> None:
    with pytest.raises(InvalidEvent, match="differs from client_id"):
        validate(good(), key="someone-else")


def test_decode_rejects_non_json_and_non_objects() -> None:
    with pytest.raises(InvalidEvent, match="not valid JSON"):
        decode(b"{nope")
    with pytest.raises(InvalidEvent, match="JSON object"):
        decode(b"[1]")


def test_the_record_round_trips_unknown_fields() -> None:
    event = {**good(), "trace_id": "abc"}
    assert OrderEvent.from_envelope(event).to_envelope() == event


def test_the_json_schema_agrees_with_validate() -> None:
    schema_file = Path(__file__).parents[2] / "schemas" / "json" / "order-event.schema.json"
    schema = json.loads(schema_file.read_text())
    assert set(schema["required"]) == set(REQUIRED)
    assert set(schema["properties"]["type"]["enum"]) == DEFAULT.event_types
    assert schema["additionalProperties"] is True


# -- limits at decode: every hostile message is an InvalidEvent with a reason ------------------

def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


def _raw(**changes: Any) -> bytes:
    return json.dumps({**good(), **changes}).encode()


@pytest.mark.parametrize(("raw", "reason"), [
    (b'{"a":' * 5000 + b"1" + b"}" * 5000, "nested deeper than 32"),
    (_raw(payload={"a": _nested(40)}), "nested deeper than 32"),
    (_raw().replace(b'"schema_version": 1', b'"schema_version": NaN'), "NaN is not a JSON number"),
    (_raw().replace(b'"schema_version": 1', b'"schema_version": -Infinity'), "-Infinity"),
    (_raw(payload={"amount": 1}).replace(b'"amount": 1', b'"amount": 1e400'), "too large"),
    (_raw(payload={"amount": 2**63}), "outside the 64-bit integer range"),
    (_raw(payload={"amount": -(2**63) - 1}), "outside the 64-bit integer range"),
    (_raw(payload={"note": "\ud800"}), "lone surrogate"),
    (_raw(payload={"note": "x" * 20_000}), "at most 16,384"),
    (_raw(payload={"blob": "x" * 40_000}), "at most 32,768 are accepted"),
    (b"\xff\xfe{}", "not valid JSON"),
])
def test_hostile_messages_are_refused_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent, match=reason):
        decode(raw, "client-1", DEFAULT.event_types)


def test_integers_at_the_64_bit_bounds_pass() -> None:
    for amount in (2**63 - 1, -(2**63), 0):
        assert decode(_raw(payload={"amount": amount}), "client-1")["payload"]["amount"] == amount


@pytest.mark.parametrize("value", ["order/1", "order 1", "Bestellung-ä", "注文:7", "a@b.c"])
def test_any_printable_id_is_accepted_and_askable(value: str) -> None:
    assert id_problem(value) is None
    assert decode(_raw(order_id=value), "client-1")["order_id"] == value


@pytest.mark.parametrize("value", ["a\x00b", "tab\there", "line\nbreak", "\x7f", "", "x" * 129])
def test_ids_with_control_characters_or_bad_lengths_are_refused(value: str) -> None:
    assert id_problem(value) is not None
    with pytest.raises(InvalidEvent, match="`order_id`"):
        decode(_raw(order_id=value), "client-1")
