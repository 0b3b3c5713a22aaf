"""Dead letters: the contract's record on `orders.dlq`, built in one place, with a stable id.

One failure is one dead letter. A letter's `id` is derived from what failed, not from when: the
failure's kind, the Kafka message the event came in (topic, partition, offset) and the event id. A
crash that redoes the same message redoes the same failure with the same id, so readers (`orderflow
dlq list`, `dlq replay`, the dashboard) count it once; the processor also records the ids of the
letters an order sent on the order itself, in the same changelog record as the failure, so a redo
finds the id there and sends nothing. A replayed event comes back at a new offset: if it fails
again, that is a new failure with a new id.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any, TypedDict

from schemas.envelope import parse_json
from streams.core.machine import rfc3339
from streams.errors import InvalidEvent

#: A value that is not an event within the limits is kept as text, cut to this many bytes, so the
#: letter itself always fits in a Kafka message.
MAX_RAW_BYTES = 65_536


class LetterReason(TypedDict):
    kind: str
    message: str


class LetterSource(TypedDict):
    topic: str
    partition: int
    offset: int


class DeadLetter(TypedDict):
    """One record of `orders.dlq`, as the contract gives it."""

    id: str
    event: Any  # the envelope, or what the message held when it is none (a JSON value, or text)
    reason: LetterReason
    attempts: int
    source: LetterSource
    failed_at: str


@dataclass(unsafe_hash=True)
class Source:
    """Where an event came in: the Kafka message it was read from. (Made for every event: its own
    `__init__` is compiled, a dataclass's would run as Python; see `streams.core.decisions`.)"""

    topic: str
    partition: int
    offset: int

    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset

    def as_list(self) -> list[Any]:
        """The compact form kept on parked events and pending retries in the order record."""
        return [self.topic, self.partition, self.offset]

    @classmethod
    def from_list(cls, value: Any, fallback: Source) -> Source:
        """The inverse of `as_list`; `fallback` for records written before sources were kept."""
        if isinstance(value, list) and len(value) == 3:
            return cls(str(value[0]), int(value[1]), int(value[2]))
        return fallback


def letter_id(kind: str, source: Source, event_id: str | None) -> str:
    """The stable id of one failure: the same kind of failure of the same message, always."""
    text = json.dumps([kind, source.topic, source.partition, source.offset, event_id])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def raw_event(raw: bytes) -> tuple[Any, bool]:
    """A message's value as a letter shows it: its JSON value when it parses within the limits,
    else its text (cut to MAX_RAW_BYTES; the flag says it was cut). Never raises: the bytes may be
    the very message that broke the decoder."""
    try:
        return parse_json(raw), False
    except InvalidEvent:
        return raw[:MAX_RAW_BYTES].decode("utf-8", errors="replace"), len(raw) > MAX_RAW_BYTES


def dead_letter(event: Any, kind: str, message: str, attempts: int, source: Source,
                now: float | None = None) -> DeadLetter:
    """`event` is the envelope, or the raw bytes of a message that is not one."""
    if isinstance(event, bytes):
        size = len(event)
        event, cut = raw_event(event)
        if cut:
            message = f"{message} (the letter keeps the first {MAX_RAW_BYTES:,} of {size:,} bytes)"
    event_id = event.get("event_id") if isinstance(event, dict) else None
    return {
        "id": letter_id(kind, source, event_id if isinstance(event_id, str) else None),
        "event": event,
        "reason": {"kind": kind, "message": message},
        "attempts": attempts,
        "source": {"topic": source.topic, "partition": source.partition, "offset": source.offset},
        "failed_at": rfc3339(time.time() if now is None else now),
    }


def encode(letter: DeadLetter) -> bytes:
    return json.dumps(letter, separators=(",", ":"), ensure_ascii=False).encode()


def key_of(letter: DeadLetter, fallback: bytes | None) -> bytes | None:
    """Dead letters are keyed by client_id like every orderflow topic (the raw key if unknown)."""
    event = letter["event"]
    if isinstance(event, dict) and isinstance(event.get("client_id"), str):
        return str(event["client_id"]).encode()
    return fallback
