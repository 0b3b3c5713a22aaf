"""Publishing order events: a confluent-kafka producer keyed by client_id, murmur2-partitioned.

murmur2 is the Java client's default partitioner, so events land where Java producers put them.
The producer is idempotent with acks=all, and every send waits for its delivery report.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from confluent_kafka import KafkaError, Message, Producer

from schemas.envelope import validate
from streams.config import Settings
from streams.errors import InvalidEvent
from streams.kafka_clients import client_config


@dataclass
class PublishReport:
    """What a publish run did: counts and one line per problem."""

    sent: int = 0
    invalid: int = 0
    undelivered: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.invalid == 0 and self.undelivered == 0

    def summary(self) -> str:
        return f"sent {self.sent}, invalid {self.invalid}, undelivered {self.undelivered}"


class Publisher:
    """Sends events (or raw values) to a topic, keyed by client_id, and waits for delivery."""

    def __init__(self, settings: Settings, **overrides: Any) -> None:
        conf = {
            **client_config(settings),
            "enable.idempotence": True,
            "acks": "all",
            "partitioner": "murmur2_random",
            "linger.ms": 5,
            "compression.type": "lz4",
            **overrides,
        }
        self._producer = Producer(conf)
        self.report = PublishReport()
        self.default_topic = settings.events_topic

    def send_raw(self, key: str | bytes | None, value: bytes, topic: str | None = None,
                 headers: list[tuple[str, str | bytes | None]] | None = None, tag: str = "") -> None:
        """Queue one message as is; its delivery is counted in the report."""
        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is None:
                self.report.sent += 1
            else:
                self.report.undelivered += 1
                self.report.problems.append(f"{tag or 'message'}: not delivered: {err.str()}")

        while True:
            try:
                self._producer.produce(topic or self.default_topic, value=value, key=key,
                                       headers=headers, on_delivery=delivered)
                break
            except BufferError:
                self._producer.poll(0.1)  # local queue full: let deliveries drain, then retry
        self._producer.poll(0)

    def send(self, event: dict[str, Any], topic: str | None = None, tag: str = "") -> None:
        """Validate and queue one event with key = client_id; raise InvalidEvent when it is bad."""
        validate(event)
        self.send_raw(event["client_id"], self.encode(event), topic=topic, tag=tag)

    @staticmethod
    def encode(event: dict[str, Any]) -> bytes:
        """The wire form of an event: compact UTF-8 JSON."""
        return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()

    def flush(self, timeout_s: float = 60.0) -> PublishReport:
        """Wait for every queued delivery report; return the report so far."""
        pending = self._producer.flush(timeout_s)
        if pending:
            self.report.undelivered += pending
            self.report.problems.append(f"{pending} messages still undelivered after {timeout_s}s")
        return self.report

    def publish(self, events: Iterable[dict[str, Any]]) -> PublishReport:
        """Send many valid events and wait for all of them."""
        for event in events:
            self.send(event)
        return self.flush()


def read_json_lines(stream: IO[str]) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    """Yield (line number, event or None, problem) for each non-blank line."""
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
            validate(event)
        except ValueError as exc:
            yield number, None, f"line {number}: not valid JSON: {exc}"
            continue
        except InvalidEvent as exc:
            yield number, None, f"line {number}: {exc}"
            continue
        yield number, event, ""


def publish_lines(settings: Settings, stream: IO[str],
                  progress: Callable[[int], None] | None = None) -> PublishReport:
    """Publish a JSON-lines stream: good lines are sent, bad ones reported by line number."""
    publisher = Publisher(settings)
    report = publisher.report
    for number, event, problem in read_json_lines(stream):
        if event is None:
            report.invalid += 1
            report.problems.append(problem)
        else:
            publisher.send(event, tag=f"line {number}")
        if progress is not None and number % 10_000 == 0:
            progress(number)
    return publisher.flush()


def print_progress(lines: int) -> None:
    print(f"  … {lines} lines read", file=sys.stderr, flush=True)
