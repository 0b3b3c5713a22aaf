"""The order event envelope: one validate function used everywhere, and a Faust record for Python code.

`validate` works on the decoded JSON object (a dict), so it is cheap enough to run on every event;
unknown fields are kept untouched.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

import faust

from streams.errors import InvalidEvent

SCHEMA_VERSION = 1
ID_FIELDS = ("event_id", "order_id", "client_id")
REQUIRED = (*ID_FIELDS, "type", "occurred_at", "schema_version")
MAX_ID = 128
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def is_rfc3339(value: object) -> bool:
    """True for an RFC 3339 timestamp with a zone, e.g. 2026-01-31T12:00:00Z."""
    if not isinstance(value, str) or not _RFC3339.match(value):
        return False
    try:
        datetime.fromisoformat(value.replace("z", "Z").replace("t", "T"))
    except ValueError:
        return False
    return True


def validate(
    event: Any, key: str | None = None, event_types: Collection[str] | None = None
) -> dict[str, Any]:
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
        if not isinstance(value, str):
            raise InvalidEvent(f"field `{name}` must be a string")
        if not 1 <= len(value) <= MAX_ID:
            raise InvalidEvent(f"field `{name}` must be 1 to {MAX_ID} characters, not {len(value)}")
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
    return event


def decode(raw: bytes | str, key: bytes | str | None = None,
           event_types: Collection[str] | None = None) -> dict[str, Any]:
    """Decode one Kafka message (UTF-8 JSON) and validate it against its key."""
    try:
        event = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidEvent(f"not valid JSON: {exc}") from None
    if isinstance(key, bytes):
        try:
            key = key.decode()
        except UnicodeDecodeError:
            raise InvalidEvent("message key is not UTF-8") from None
    return validate(event, key, event_types)


class OrderEvent(faust.Record, serializer="json", include_metadata=False):
    """The envelope as a typed record for Python producers and tests; `extra` holds unknown fields."""

    event_id: str
    order_id: str
    client_id: str
    type: str
    occurred_at: str
    payload: dict = {}  # noqa: RUF012 - faust records copy mutable defaults
    schema_version: int = SCHEMA_VERSION
    extra: dict = {}  # noqa: RUF012

    @classmethod
    def from_envelope(cls, envelope: Mapping[str, Any]) -> OrderEvent:
        """Build from a validated envelope, keeping unknown fields in `extra`."""
        known = {k: envelope[k] for k in cls._options.fields if k in envelope and k != "extra"}
        extra = {k: v for k, v in envelope.items() if k not in cls._options.fields}
        return cls(**known, extra=extra)

    def to_envelope(self) -> dict[str, Any]:
        """The wire form: known fields plus the unknown ones, flat, as producers send it."""
        body = {name: getattr(self, name) for name in REQUIRED}
        if self.payload:
            body["payload"] = self.payload
        return {**self.extra, **body}
