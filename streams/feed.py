"""The change feed's producer: confluent-kafka, flushed with the ack loop's flush.

A change record goes out for every applied transition, with the order's whole view: as many
records as events, each a kilobyte or two. Through Faust's producer (a Python buffer in front of
aiokafka, per message) that cost a third of the worker's rate at a million orders; librdkafka
takes a record in a few microseconds and batches in its own threads.

Delivery is what makes the feed at least once: `flush` waits (off the event loop) until every
record produced so far is delivered, however long that takes (a broker that just started can take
a minute to give an idempotent producer its id; the acks wait meanwhile, as they do for Faust's own
producer), and raises if one was refused, so the ack loop acks no event whose change did not reach
Kafka: the worker stops, and the redo sends the change again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from streams.errors import BrokerError
from streams.kafka_clients import FLUSHED_LINGER_MS

log = logging.getLogger(__name__)


class ChangeFeed:
    """`send` queues a record in librdkafka; `flush` waits for all of them to be delivered."""

    def __init__(self, client_config: dict[str, Any], topic: str, report_every_s: float = 30.0) -> None:
        self.topic = topic
        self.report_every_s = report_every_s
        self._producer = Producer({
            **client_config, "enable.idempotence": True, "acks": "all", "linger.ms": FLUSHED_LINGER_MS,
            "compression.type": "lz4", "partitioner": "murmur2_random",
            # a report for a refused record only: the flush needs to know of a failure, so a
            # delivered record costs no `Message` and no Python call (confluent-kafka still takes
            # the GIL once per report: bench/RESULTS.md, 2026-12-06 05:00)
            "delivery.report.only.error": True,
        })
        self._failed: KafkaError | None = None
        self._queued = 0
        self._on_delivery = self._delivered  # bound once, not at every record

    def send(self, key: bytes, value: bytes) -> None:
        while True:
            try:
                self._producer.produce(self.topic, value, key, on_delivery=self._on_delivery)
                break
            except BufferError:  # librdkafka's queue is full: let it deliver some
                self._producer.poll(0.05)
        self._queued += 1
        if self._queued % 1000 == 0:
            self._producer.poll(0)  # serve delivery reports as we go

    def _delivered(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None and self._failed is None:
            self._failed = error

    async def flush(self) -> None:
        """Wait until everything sent so far is delivered; BrokerError if something was not."""
        if self._queued:
            self._queued = 0
            started = time.monotonic()
            while (left := await asyncio.to_thread(self._producer.flush, self.report_every_s)) \
                    and self._failed is None:
                log.warning("change feed: %d records not delivered to %s after %.0f s; waiting",
                            left, self.topic, time.monotonic() - started)
        if self._failed is not None:
            failed, self._failed = self._failed, None
            raise BrokerError(f"a change record was refused by {self.topic}: {failed.str()}")

    def close(self, timeout_s: float = 30.0) -> None:
        self._producer.flush(timeout_s)
