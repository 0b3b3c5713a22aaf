"""Table changes through librdkafka: RocksDB first, then the changelog record, batched.

Faust writes a table change twice over in Python: the store's put, and a changelog record through
its producer buffer into aiokafka, one `send` per record, whose sender keeps one request in flight
per broker; at a steady 1,000 events/s its flush took 42 ms at the median and over a second at
worst, and that flush is what every ack (and every change-feed record) waits for. Here a change is
encoded once (Faust's own codec, the same bytes Faust would write), put into the partition's
RocksDB, and produced by a confluent-kafka producer (idempotent, acks=all, lz4), which batches in
its own threads. `flush` waits off the event loop until every record is delivered, then does what
Faust's delivery callback does: it moves each changelog partition's persisted offset (the offset a
restart resumes reading from) up to the last record delivered. The local write always comes first,
so a persisted offset never claims a record the store lacks.

Stores that are not orderflow's RocksDB store (the in-memory store of in-process tests) go through
Faust's own path, unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from confluent_kafka import KafkaError, Message, Producer
from faust.types import TP
from faust.utils import json as faust_json

from streams.engine.rocksdb import Store as RocksStore
from streams.errors import BrokerError
from streams.kafka_clients import FLUSHED_LINGER_MS

log = logging.getLogger(__name__)

_FAUST_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z  # faust.utils.json.dumps's


def table_json(value: Any) -> bytes:
    """A table key or value as Faust's `json` codec writes it: the very call its codec makes
    (faust.utils.json.dumps with orjson, faust-streaming 0.15.3), without the serializer registry's
    lookups and the codec chain around it per record (tests/unit/test_changelog_writer.py)."""
    return orjson.dumps(value, default=faust_json.on_default, option=_FAUST_JSON_OPTIONS)


def encodes_as_table_json(app: Any, table: Any) -> bool:
    """Whether Faust writes this table's keys and values with its plain `json` codec over orjson
    (no models, no other codec): then `table_json` gives the same bytes."""
    key_codec = table.key_serializer or app.conf.key_serializer
    value_codec = table.value_serializer or app.conf.value_serializer
    return (faust_json.orjson is not None and key_codec == "json" and value_codec == "json"
            and table.key_type in (None, str) and table.value_type is None)


class ChangelogWriter:
    """`put`/`delete` a table key in a partition; `flush` delivers and records persisted offsets."""

    def __init__(self, app: Any, client_config: dict[str, Any], report_every_s: float = 30.0) -> None:
        self._app = app
        # murmur2, as Java's clients and Faust's producer place a keyed record (`produce`); the
        # changelog records name their partition
        self._config = {**client_config, "enable.idempotence": True, "acks": "all",
                        "linger.ms": FLUSHED_LINGER_MS, "compression.type": "lz4",
                        "partitioner": "murmur2_random"}
        self._producer: Producer | None = None  # made on first use (after the worker forks, if it does)
        self._report_every_s = report_every_s
        self._stores: dict[str, RocksStore] = {}  # changelog topic -> the table's store
        self._delivered: list[tuple[str, int, int]] = []  # (topic, partition, offset), from callbacks
        self._failed: KafkaError | None = None
        self._produced = 0
        self._plain: dict[str, bool] = {}  # table name -> encodes_as_table_json
        self._handled: dict[str, bool] = {}  # table name -> its store is orderflow's RocksDB store

    def handles(self, table: Any) -> bool:
        handled = self._handled.get(table.name)
        if handled is None:  # a table's store is made once, with the app's store URL
            handled = self._handled[table.name] = isinstance(table.data, RocksStore)
        return handled

    def put(self, table: Any, key: Any, partition: int, value: Any, encoded: bytes | None = None) -> None:
        """Write `value` (`encoded`: its bytes as `table_json` made them, when the caller has them)."""
        key_bytes = self._dumps_key(table, key)
        value_bytes = self._dumps_value(table, value, encoded)
        store: RocksStore = table.data
        store.put_local(partition, key_bytes, value_bytes)
        self._send(table, store, partition, key_bytes, value_bytes)

    def write(self, table: Any, changes: list[tuple[Any, int, Any, bytes | None]]) -> None:
        """Many `(key, partition, value or None to delete, encoded or None)` at once: the local
        writes first, one RocksDB write batch per partition, then their changelog records (a
        delete only for a key that is there)."""
        store: RocksStore = table.data
        batches: dict[int, tuple[Any, list[bytes]]] = {}  # partition -> its batch, its deleted keys
        records: list[tuple[int, bytes, bytes | None]] = []
        for key, partition, value, encoded in changes:
            key_bytes = self._dumps_key(table, key)
            record = None if value is None else self._dumps_value(table, value, encoded)
            if record is None and not store.has_local(partition, key_bytes):
                continue  # nothing to delete: no tombstone
            if partition not in batches:
                batches[partition] = (store.local_batch(), [])
            batch, deleted = batches[partition]
            if record is None:
                batch.delete(key_bytes)
                deleted.append(key_bytes)
            else:
                batch.put(key_bytes, record)
            records.append((partition, key_bytes, record))
        for partition, (batch, deleted) in batches.items():
            store.write_local(partition, batch, deleted)
        self._send_all(table, store, records)

    def delete(self, table: Any, key: Any, partition: int) -> None:
        """Remove the key and write its tombstone (nothing when the key is not there)."""
        key_bytes = self._dumps_key(table, key)
        store: RocksStore = table.data
        if store.delete_local(partition, key_bytes):
            self._send(table, store, partition, key_bytes, None)

    def _plain_json(self, table: Any) -> bool:
        plain = self._plain.get(table.name)
        if plain is None:
            plain = self._plain[table.name] = encodes_as_table_json(self._app, table)
        return plain

    def _dumps_value(self, table: Any, value: Any, encoded: bytes | None) -> bytes:
        if self._plain_json(table):
            return encoded if encoded is not None else table_json(value)
        return bytes(self._app.serializers.dumps_value(table.value_type, value,
                                                       serializer=table.value_serializer))

    def _dumps_key(self, table: Any, key: Any) -> bytes:
        if self._plain_json(table):
            return table_json(key)
        return bytes(self._app.serializers.dumps_key(table.key_type, key, serializer=table.key_serializer))

    def _send(self, table: Any, store: RocksStore, partition: int, key: bytes, value: bytes | None) -> None:
        self._send_all(table, store, [(partition, key, value)])

    def _send_all(self, table: Any, store: RocksStore,
                  records: list[tuple[int, bytes, bytes | None]]) -> None:
        """The changelog records of one table, `(partition, key, value or None: a tombstone)`."""
        topic = table.changelog_topic.get_topic_name()
        self._stores[topic] = store
        producer = self._producer or self._open()
        on_delivery = self._on_delivery  # bound once per call, not per record
        for partition, key, value in records:
            while True:
                try:
                    producer.produce(topic, value, key, partition=partition, on_delivery=on_delivery)
                    break
                except BufferError:  # librdkafka's queue is full: let it deliver some
                    producer.poll(0.05)
            self._produced += 1
            if self._produced % 1000 == 0:
                producer.poll(0)  # serve delivery reports as we go

    def produce(self, topic: str, key: bytes | None, value: bytes) -> None:
        """A record that must leave with the changelog records (a dead letter, whose order record
        remembers it was sent): the same idempotent producer and flush, so the two wait for the
        same things (a broker's producer id after a restart, say) and go out together, instead of
        the letter through Faust's producer long before the record (a worker stopped in between
        sent the letter twice)."""
        producer = self._producer or self._open()
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=self._on_delivery)
                break
            except BufferError:  # librdkafka's queue is full: let it deliver some
                producer.poll(0.05)

    def _open(self) -> Producer:
        self._producer = Producer(self._config)
        return self._producer

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        # runs in whichever thread serves librdkafka's reports (the flush's, or the loop's poll)
        if error is not None:
            if self._failed is None:
                self._failed = error
            return
        self._delivered.append((str(message.topic()), int(message.partition() or 0),
                                int(message.offset() or 0)))

    async def flush(self) -> None:
        """Wait until everything written so far is delivered, then move the persisted offsets;
        BrokerError if a record was refused (nothing that waits for this flush may be acked)."""
        # gated on what librdkafka still holds, not on what this call produced: a flush at a
        # revoke may be delivering the ack loop's records, which must wait for them all the same
        if self._producer is not None and len(self._producer):
            started = time.monotonic()
            while (left := await asyncio.to_thread(self._producer.flush, self._report_every_s)) \
                    and self._failed is None:
                log.warning("changelogs: %d records not delivered after %.0f s; waiting",
                            left, time.monotonic() - started)
        if self._failed is not None:
            failed, self._failed = self._failed, None
            raise BrokerError(f"a changelog record was refused: {failed.str()}")
        self._persist_offsets()

    def _persist_offsets(self) -> None:
        delivered, self._delivered = self._delivered, []
        last: dict[tuple[str, int], int] = {}
        for topic, partition, offset in delivered:
            if offset > last.get((topic, partition), -1):
                last[(topic, partition)] = offset
        for (topic, partition), offset in last.items():
            store = self._stores.get(topic)
            if store is not None:  # not another topic's record (`produce`)
                store.persist_offset(TP(topic, partition), offset)

