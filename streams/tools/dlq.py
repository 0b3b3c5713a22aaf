"""`orderflow dlq list|replay`: read the dead-letter topic, show it, send chosen events back.

The dead-letter topic is a log: replaying does not remove a letter, it sends its event to
`orders.events` again, where the processor treats it like any new event (its id was released when
it failed, so it is processed, not dropped as a duplicate).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import TopicPartition

from schemas.envelope import validate
from streams.config import Settings
from streams.errors import BrokerError, InvalidEvent, OrderflowError
from streams.kafka_clients import open_topic
from streams.tools.publisher import Publisher


@dataclass(frozen=True)
class Letter:
    partition: int
    offset: int
    body: dict[str, Any]

    @property
    def id(self) -> str:
        """The failure's stable id (letters from before ids existed: their place on the topic)."""
        return str(self.body.get("id") or f"{self.partition}:{self.offset}")

    @property
    def kind(self) -> str:
        return str(self.body.get("reason", {}).get("kind", "?"))

    @property
    def event(self) -> Any:
        return self.body.get("event")

    @property
    def event_id(self) -> str:
        event = self.event
        return str(event.get("event_id", "")) if isinstance(event, dict) else ""


def read_letters(settings: Settings, progress: Callable[[int], None] | None = None) -> list[Letter]:
    """Every dead letter now on the topic (read to the end of each partition), oldest first."""
    consumer, _, ends = open_topic(settings, settings.dlq_topic, "dlq")
    try:
        consumer.assign([TopicPartition(settings.dlq_topic, p, 0) for p in ends])
        letters: list[Letter] = []
        remaining = dict(ends)
        while remaining:
            msg = consumer.poll(5.0)
            if msg is None:
                raise BrokerError(f"no answer from {settings.dlq_topic} while reading it")
            if msg.error():
                continue
            partition, offset = int(msg.partition() or 0), int(msg.offset() or 0)
            letters.append(Letter(partition, offset, _parse(msg.value())))
            if offset + 1 >= remaining.get(partition, 0):
                remaining.pop(partition, None)
            if progress is not None and len(letters) % 10_000 == 0:
                progress(len(letters))
    finally:
        consumer.close()
    return sorted(letters, key=lambda letter: (str(letter.body.get("failed_at", "")),
                                               letter.partition, letter.offset))


def unique(letters: Iterable[Letter]) -> list[Letter]:
    """One letter per failure: a failure redone after a crash may be on the topic twice, with the
    same id; the first copy stands for it."""
    firsts: dict[str, Letter] = {}
    for letter in letters:
        firsts.setdefault(letter.id, letter)
    return list(firsts.values())


def _parse(raw: bytes | None) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return {"event": (raw or b"").decode(errors="replace"),
                "reason": {"kind": "unreadable", "message": "not a dead-letter record"}}
    return body


def table(letters: Iterable[Letter], width: int = 60) -> str:
    """The letters as an aligned text table, one row each."""
    rows = [("FAILED AT", "ID", "P:OFFSET", "KIND", "ATTEMPTS", "EVENT ID", "ORDER", "TYPE", "MESSAGE")]
    for letter in letters:
        event = letter.event if isinstance(letter.event, dict) else {}
        message = str(letter.body.get("reason", {}).get("message", "")).replace("\n", " ")
        rows.append((str(letter.body.get("failed_at", "")), letter.id[:12],
                     f"{letter.partition}:{letter.offset}", letter.kind,
                     str(letter.body.get("attempts", "")), letter.event_id or "-",
                     str(event.get("order_id", "-")), str(event.get("type", "-")),
                     message if len(message) <= width else message[: width - 1] + "…"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


@dataclass
class Replay:
    """What a replay chose: the events to send, and what it left out and why."""

    events: list[dict[str, Any]]
    skipped: list[str]


def choose(letters: list[Letter], event_ids: list[str] | None, kind: str | None) -> Replay:
    """The events to replay: the newest letter per event id; unreplayable ones are skipped.

    Asking for an event id that is not in the dead letters is an error (nothing is sent)."""
    newest: dict[str, Letter] = {}
    skipped: list[str] = []
    for letter in letters:
        if kind is not None and letter.kind != kind:
            continue
        try:
            validate(letter.event)
        except InvalidEvent as exc:
            skipped.append(f"{letter.partition}:{letter.offset} ({letter.kind}): not replayable: {exc}")
            continue
        newest[letter.event_id] = letter
    if event_ids is not None:
        missing = [e for e in event_ids if e not in newest]
        if missing:
            raise OrderflowError(f"not among the replayable dead letters: {', '.join(missing)}")
        chosen = [newest[e] for e in dict.fromkeys(event_ids)]
        skipped = []
    else:
        chosen = list(newest.values())
    return Replay([letter.event for letter in chosen], skipped)


def send(settings: Settings, events: list[dict[str, Any]]) -> int:
    """Publish the events to orders.events (key = client_id); the number delivered."""
    publisher = Publisher(settings)
    for event in events:
        publisher.send(event, tag=f"event {event['event_id']}")
    report = publisher.flush()
    for problem in report.problems:
        print(problem, file=sys.stderr)
    if not report.ok:
        raise BrokerError(f"replay: {report.summary()}")
    return report.sent
