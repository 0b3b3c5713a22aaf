"""Reading the change feed (`orders.changes`): what `orderflow changes tail` prints.

Each record is one applied transition, sent by the worker with the flush that acks its event, so
a crash can repeat records but never lose one. `tail` prints them as they are on the topic, one
JSON line each; with `--order` only that order's, and a consumer drops repeats by
(order_id, version) as the contract says (`new_versions`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from confluent_kafka import TopicPartition

from streams.config import Settings
from streams.kafka_clients import open_topic

Change = dict[str, Any]


def read_changes(settings: Settings, follow: bool = False,
                 idle: Callable[[], None] | None = None) -> Iterator[Change]:
    """Every change record on the topic, partition by partition as they arrive; to the end of each
    partition, or, with `follow`, on and on (`idle` is called whenever nothing came for a second)."""
    topic_name = settings.changes_topic
    consumer, partitions, remaining = open_topic(settings, topic_name, "changes",
                                                 " (orderflow topics create)")
    try:
        consumer.assign([TopicPartition(topic_name, p, 0) for p in partitions])
        while follow or remaining:
            msg = consumer.poll(1.0)
            if msg is None:
                if idle is not None:
                    idle()
                continue
            if msg.error():
                continue
            partition, offset = int(msg.partition() or 0), int(msg.offset() or 0)
            if offset + 1 >= remaining.get(partition, 0):
                remaining.pop(partition, None)
            try:
                record = json.loads(msg.value() or b"")
            except ValueError:
                continue  # not a change record (written by something else): nothing to show
            if isinstance(record, dict):
                yield record
    finally:
        consumer.close()


def new_versions(records: Iterator[Change]) -> Iterator[Change]:
    """Drop repeats (redone after a crash): an order's records come in its order, so a record whose
    version is not above the last one shown of its order was shown already."""
    shown: dict[str, int] = {}
    for record in records:
        order_id, version = str(record.get("order_id")), int(record.get("version") or 0)
        if version > shown.get(order_id, 0):
            shown[order_id] = version
            yield record
