"""Fuzz: no message, however hostile, makes decoding or processing raise; every refused message
becomes a dead letter that is strict JSON with a reason."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from faust.utils import json as table_codec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import envelope
from schemas.envelope import decode, parse_json
from streams.core.deadletters import Source, dead_letter, encode
from streams.core.lifecycle import DEFAULT
from streams.errors import InvalidEvent
from tests.helpers import make_event
from tests.unit.test_processor import make_processor

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)
FIELDS = ["event_id", "order_id", "client_id", "type", "occurred_at", "payload", "schema_version"]
envelope_like = st.fixed_dictionaries(
    {}, optional={name: json_values | st.sampled_from(sorted(DEFAULT.event_types)) for name in FIELDS})


def _decoded_or_letter(raw: bytes, key: bytes | None) -> None:
    try:
        event = decode(raw, key, DEFAULT.event_types)
    except InvalidEvent as exc:
        letter = dead_letter(raw, "invalid_event", str(exc), 1, Source("t", 0, 0))
        body = json.loads(encode(letter), parse_constant=_refuse_constant)
        assert body["reason"]["kind"] == "invalid_event" and body["reason"]["message"]
        return
    assert isinstance(event, dict)
    json.dumps(event, allow_nan=False).encode()  # what was accepted can be written back out,
    table_codec.dumps(event)  # by the codec of Faust's tables too (orjson: 64-bit integers at most)


def _refuse_constant(name: str) -> Any:
    raise AssertionError(f"{name} in a dead letter")


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300), st.none() | st.binary(max_size=20))
def test_random_bytes_are_decoded_or_dead_lettered(raw: bytes, key: bytes | None) -> None:
    _decoded_or_letter(raw, key)


@settings(max_examples=400, deadline=None)
@given(envelope_like, st.sampled_from([None, b"client-1", b"other-client"]))
def test_wrong_types_and_missing_fields_are_decoded_or_dead_lettered(
        fields: dict[str, Any], key: bytes | None) -> None:
    raw = json.dumps(fields, allow_nan=True).encode()
    _decoded_or_letter(raw, key)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 3000), st.sampled_from(["[", '{"a":']), st.booleans())
def test_deep_and_unbalanced_nesting_is_dead_lettered(depth: int, opener: str, closed: bool) -> None:
    closer = "]" if opener == "[" else "}"
    raw = (opener * depth + "1" + (closer * depth if closed else "")).encode()
    _decoded_or_letter(raw, b"client-1")


odd_text = st.text(st.characters(codec="utf-8", categories=["L", "M", "N", "P", "S", "Z", "Co", "Cf"]),
                   min_size=1, max_size=128)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 2), st.sampled_from(sorted(DEFAULT.event_types)), json_values,
                          odd_text), max_size=12))
def test_the_processor_never_raises_on_valid_events_with_odd_payloads(
        steps: list[tuple[int, str, Any, str]]) -> None:
    processor, store, recorder, _ = make_processor()

    async def run() -> None:
        for offset, (order, kind, payload, order_id) in enumerate(steps):
            event = make_event(f"{order_id}-{order}", kind, payload={"v": payload}, extra_field=order_id)
            try:
                event = decode(json.dumps(event).encode(), b"client-1", DEFAULT.event_types)
            except InvalidEvent:
                continue  # refused at decode (NaN, too deep, ...): a dead letter, tested above
            await processor.handle_event(event, Source("t", 0, offset))
    asyncio.run(run())
    for order in store.orders.values():
        json.dumps(order, allow_nan=False).encode()  # every record can go to the changelog,
        table_codec.dumps(order)  # through the codec Faust writes it with
    assert not [d for d in recorder.dead_letters if d["reason"]["kind"] == "processing_error"]


def _verdict(read: Any, raw: bytes) -> tuple[str, Any]:
    try:
        return "value", json.dumps(read(raw), sort_keys=True)  # 1 and 1.0 told apart, NaN never equal
    except InvalidEvent:
        return "refused", None


json_texts = (json_values.map(lambda v: json.dumps(v, allow_nan=True))
              | st.text(st.sampled_from('{}[]",:0123456789.eE+-tfnul \\aNIy'), max_size=60))


@settings(max_examples=600, deadline=None)
@given(json_texts | st.binary(max_size=80).map(lambda b: b.decode("latin-1")),
       st.sampled_from(["", "9" * 19, "-" + "9" * 19, "18446744073709551616", "1e999", "\ufeff"]))
def test_the_fast_reader_accepts_and_reads_exactly_what_the_strict_one_does(text: str, wide: str) -> None:
    """`parse_json` reads with orjson when it can; whatever it returns must be what the strict
    reader (json.loads with its number checks) returns, and it refuses what that one refuses."""
    raw = (wide + text if wide == "\ufeff" else text.replace("0", wide or "0", 1)).encode()
    assert _verdict(parse_json, raw) == _verdict(_strict_parse, raw)


def _strict_parse(raw: bytes) -> Any:
    """parse_json as it was before the fast reader: the strict reader, then the same limits."""
    value = envelope._strict_loads(raw)
    envelope._check_shape(value)
    return value
