"""Dead letters: the contract's record on `orders.dlq`, built in one place."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from streams.machine import rfc3339


@dataclass(frozen=True)
class Source:
    topic: str
    partition: int
    offset: int


def dead_letter(event: Any, kind: str, message: str, attempts: int, source: Source,
                now: float | None = None) -> dict[str, Any]:
    """`event` is the envelope; raw bytes are kept as their JSON value, or as a string if not JSON."""
    if isinstance(event, bytes):
        text = event.decode("utf-8", errors="replace")
        try:
            event = json.loads(text)
        except ValueError:
            event = text
    return {
        "event": event,
        "reason": {"kind": kind, "message": message},
        "attempts": attempts,
        "source": {"topic": source.topic, "partition": source.partition, "offset": source.offset},
        "failed_at": rfc3339(time.time() if now is None else now),
    }


def encode(letter: dict[str, Any]) -> bytes:
    return json.dumps(letter, separators=(",", ":"), ensure_ascii=False).encode()


def key_of(letter: dict[str, Any], fallback: bytes | None) -> bytes | None:
    """Dead letters are keyed by client_id like every orderflow topic (the raw key if unknown)."""
    event = letter["event"]
    if isinstance(event, dict) and isinstance(event.get("client_id"), str):
        return str(event["client_id"]).encode()
    return fallback
