"""The order event envelope: one decode and one validate function used everywhere, the one rule for
ids (ingest and views), and a typed record for Python code. No Faust here: the same decode runs in
the worker, the CLI and the peers benchmark's Quix Streams app.

`validate` works on the decoded JSON object (a dict), so it is cheap enough to run on every event;
unknown fields are kept untouched. `decode` turns one Kafka message into a valid envelope or an
`InvalidEvent` with a reason a producer can act on: no message, however hostile, makes it raise
anything else (a value nested 5,000 deep once raised `RecursionError` and stopped a partition).

Limits enforced at decode (the README lists them): at most `MAX_EVENT_BYTES` bytes, containers
nested at most `MAX_DEPTH` deep, strings (keys and values) at most `MAX_STRING` characters, numbers
JSON allows (no NaN or Infinity, no float that overflows, integers within 64 bits), text that is
valid UTF-8 (no lone surrogates from `\\ud800` escapes, which could not be written back out).
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, NotRequired, TypedDict, cast

import orjson

from streams.errors import InvalidEvent

SCHEMA_VERSION = 1
ID_FIELDS = ("event_id", "order_id", "client_id")
REQUIRED = (*ID_FIELDS, "type", "occurred_at", "schema_version")
MAX_ID = 128
#: An order record holds its parked events and pending retry (up to ORDERFLOW_PARK_LIMIT + 1 whole
#: events, 21 by default) and is written as one changelog record, which Kafka caps at about 1 MB:
#: 32 KiB per event keeps the largest record within it.
MAX_EVENT_BYTES = 32_768
MAX_DEPTH = 32
MAX_STRING = 16_384
#: Integers are signed 64-bit: Faust writes table records with orjson (when installed, as it is by
#: this project), which refuses anything wider, and so does every JVM consumer of the change feed.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
ID_RULE = f"1 to {MAX_ID} characters, none of them a control character"
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


class Envelope(TypedDict):
    """A valid order event as `validate` returns it (unknown fields, kept untouched, are not typed)."""

    event_id: str
    order_id: str
    client_id: str
    type: str
    occurred_at: str
    schema_version: int
    payload: NotRequired[dict[str, Any] | None]


def is_rfc3339(value: object) -> bool:
    """True for an RFC 3339 timestamp with a zone, e.g. 2026-01-31T12:00:00Z."""
    if not isinstance(value, str) or not _RFC3339.match(value):
        return False
    try:
        datetime.fromisoformat(value.replace("z", "Z").replace("t", "T"))
    except ValueError:
        return False
    return True


def id_problem(value: object) -> str | None:
    """Why `value` is not a valid id (the rule for event, order and client ids, at ingest and in the
    views' paths alike), or None when it is one. Any printable text is allowed, `/` and spaces
    included (the views take them URL-encoded); control characters are not."""
    if not isinstance(value, str):
        return "must be a string"
    if not 1 <= len(value) <= MAX_ID:
        return f"must be 1 to {MAX_ID} characters, not {len(value)}"
    if not value.isprintable() and any(unicodedata.category(c) in ("Cc", "Cs") for c in value):
        return "must not contain control characters"
    return None


def validate(
    event: Any, key: str | None = None, event_types: Collection[str] | None = None
) -> Envelope:
    """Return `event` when it is a valid envelope, else raise InvalidEvent saying which rule it breaks.

    `key` is the Kafka message key when there is one: it must equal `client_id`.
    `event_types` limits `type` (the lifecycle's event types); None accepts any non-empty string.
    """
    if not isinstance(event, dict):
        raise InvalidEvent(f"an event must be a JSON object, not {type(event).__name__}")
    for name in REQUIRED:
        if name not in event:
            raise InvalidEvent(f"field `{name}` is missing")
    for name in ID_FIELDS:
        value = event[name]
        if type(value) is str and 0 < len(value) <= MAX_ID and value.isprintable():
            continue  # a good id (every event's three): no call
        problem = id_problem(value)
        if problem is not None:
            raise InvalidEvent(f"field `{name}` {problem}")
    kind = event["type"]
    if not isinstance(kind, str) or not kind:
        raise InvalidEvent("field `type` must be a non-empty string")
    if event_types is not None and kind not in event_types:
        raise InvalidEvent(f"field `type` is {kind!r}; expected one of {', '.join(sorted(event_types))}")
    if not is_rfc3339(event["occurred_at"]):
        raise InvalidEvent("field `occurred_at` must be an RFC 3339 timestamp like 2026-01-31T12:00:00Z")
    payload = event.get("payload")
    if payload is not None and not isinstance(payload, dict):
        raise InvalidEvent("field `payload` must be a JSON object")
    version = event["schema_version"]
    if type(version) is not int or version != SCHEMA_VERSION:
        raise InvalidEvent(f"field `schema_version` must be the integer {SCHEMA_VERSION}")
    if key is not None and key != event["client_id"]:
        raise InvalidEvent(f"message key {key!r} differs from client_id {event['client_id']!r}")
    return cast(Envelope, event)


class _NotJson(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise _NotJson(f"the number {text[:40]} is too large for a 64-bit float")
    return number


def _int64(text: str) -> int:
    number = int(text)
    if not INT64_MIN <= number <= INT64_MAX:
        raise _NotJson(f"the number {text[:40]} is outside the 64-bit integer range")
    return number


def parse_json(raw: bytes | str) -> Any:
    """`raw` as JSON, strictly (no NaN or Infinity) and within the limits; InvalidEvent otherwise.

    The limits cost two C-speed scans of the bytes on a typical event: only a message with more
    brackets than `MAX_DEPTH`, longer than `MAX_STRING`, or with `\\u` escapes is walked."""
    size = len(raw)
    if size > MAX_EVENT_BYTES:
        raise InvalidEvent(f"the message is {size:,} bytes; at most {MAX_EVENT_BYTES:,} are accepted")
    data = raw.encode("utf-8", errors="surrogatepass") if isinstance(raw, str) else raw
    value = _fast_loads(data)
    if value is _NOT_FAST:
        value = _strict_loads(data)
    if data.count(b"{") + data.count(b"[") > MAX_DEPTH or size > MAX_STRING or b"\\u" in data:
        _check_shape(value)
    return value


_NOT_FAST = object()
#: a run of 19 digits or more: maybe an integer beyond 64 bits, which orjson reads as a float or an
#: unsigned integer where the strict reader refuses it. Found by mapping every digit to "0" and
#: everything else to "." (`bytes.translate`) and looking for 19 zeros: two C passes, a sixth of
#: what the regex `[0-9]{19,}` cost (which took more than orjson's own read: 4% of a worker's loop)
_DIGITS_AS_ZEROS = bytes(0x30 if 0x30 <= b <= 0x39 else 0x2E for b in range(256))
_LONG_DIGITS = b"0" * 19


def _fast_loads(data: bytes) -> Any:
    """orjson's reading of `data` when it is the strict reader's too, else `_NOT_FAST`.

    orjson is several times faster than `json.loads` with its per-number callbacks, and as strict
    (no NaN, Infinity, overflowing float, lone surrogate or control character): whatever it refuses,
    and whatever might hold a wide integer, goes to the strict reader, which gives the reason."""
    if _LONG_DIGITS in data.translate(_DIGITS_AS_ZEROS):
        return _NOT_FAST
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return _NOT_FAST


def _strict_loads(data: bytes) -> Any:
    try:
        return json.loads(data, parse_constant=_no_constant, parse_float=_finite, parse_int=_int64)
    except RecursionError:
        raise InvalidEvent(f"not valid JSON: nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # _NotJson and UnicodeDecodeError included
        raise InvalidEvent(f"not valid JSON: {exc}") from None


def _check_shape(value: Any) -> None:
    """Depth, string lengths and UTF-8 of a parsed value, without recursion (a deep value must not
    overflow the stack of the check meant to refuse it)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise InvalidEvent(f"values are nested deeper than {MAX_DEPTH} levels")
            if isinstance(item, dict):
                for key, inner in item.items():
                    _check_text(key)
                    stack.append((inner, depth + 1))
            else:
                stack.extend((inner, depth + 1) for inner in item)


def _check_text(text: str) -> None:
    if len(text) > MAX_STRING:
        raise InvalidEvent(f"a string of {len(text):,} characters; at most {MAX_STRING:,} are accepted")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidEvent("a string holds a lone surrogate (\\ud800-\\udfff), which is not text") from None


def decode(raw: bytes | str, key: bytes | str | None = None,
           event_types: Collection[str] | None = None) -> Envelope:
    """Decode one Kafka message (UTF-8 JSON) and validate it against its key."""
    event = parse_json(raw)
    if isinstance(key, bytes):
        try:
            key = key.decode()
        except UnicodeDecodeError:
            raise InvalidEvent("message key is not UTF-8") from None
    return validate(event, key, event_types)


@dataclass(frozen=True)
class OrderEvent:
    """The envelope as a typed record for Python producers and tests; `extra` holds unknown fields."""

    event_id: str
    order_id: str
    client_id: str
    type: str
    occurred_at: str
    payload: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_envelope(cls, envelope: Mapping[str, Any]) -> OrderEvent:
        """Build from a validated envelope, keeping unknown fields in `extra`."""
        names = {f.name for f in fields(cls)} - {"extra"}
        known = {k: envelope[k] for k in names if k in envelope}
        extra = {k: v for k, v in envelope.items() if k not in names and k != "extra"}
        return cls(**known, extra=extra)

    def to_envelope(self) -> dict[str, Any]:
        """The wire form: known fields plus the unknown ones, flat, as producers send it."""
        body = {name: getattr(self, name) for name in REQUIRED}
        if self.payload:
            body["payload"] = self.payload
        return {**self.extra, **body}
