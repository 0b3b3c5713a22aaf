"""The changelog writer (streams/engine/changelog.py) with a fake librdkafka producer and a store
whose databases are dicts: the local write comes before the record, persisted offsets follow what
was delivered, and a refused record fails the flush. On Kafka: tests/kafka/test_recovery.py."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from faust.types import TP

from streams.engine import changelog
from streams.engine.changelog import ChangelogWriter
from streams.engine.rocksdb import Store
from streams.errors import BrokerError

TOPIC = "app-orders-changelog"


class FakeDB(dict[bytes, bytes]):
    writes = 0  # RocksDB writes (a put, a delete or a batch)

    def put(self, key: bytes, value: bytes) -> None:
        self.writes += 1
        self[key] = value

    def delete(self, key: bytes) -> None:
        self.writes += 1
        self.pop(key, None)

    def write(self, batch: FakeBatch) -> None:
        self.writes += 1
        for key, value in batch.ops:
            if value is None:
                self.pop(key, None)
            else:
                self[key] = value


@dataclass
class FakeBatch:
    ops: list[tuple[bytes, bytes | None]] = field(default_factory=list)

    def put(self, key: bytes, value: bytes) -> None:
        self.ops.append((key, value))

    def delete(self, key: bytes) -> None:
        self.ops.append((key, None))


class FakeStore(Store):
    """Faust's RocksDB store minus RocksDB: only what the writer touches."""

    def __init__(self) -> None:  # not Faust's: that opens an app's store
        self._dbs: dict[int, FakeDB] = {}
        self._key_index = {}  # type: ignore[assignment]
        self.persisted: dict[int, int] = {}

    def _open_for_partition(self, partition: int) -> FakeDB:  # type: ignore[override]
        return FakeDB()

    def local_batch(self) -> FakeBatch:  # type: ignore[override]
        return FakeBatch()

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        self.persisted[tp.partition] = offset


@dataclass
class FakeProducer:
    store: FakeStore
    refuse: bool = False
    pending: list[tuple[bytes, bytes | None, int, Callable[..., None]]] = field(default_factory=list)
    log: list[tuple[int, bytes, bytes | None]] = field(default_factory=list)
    ends: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    others: list[tuple[str, bytes, bytes | None, Callable[..., None]]] = field(default_factory=list)
    delivered_others: list[tuple[str, bytes, bytes | None]] = field(default_factory=list)

    def produce(self, topic: str, value: bytes | None, key: bytes, partition: int = -1,
                on_delivery: Callable[..., None] | None = None) -> None:
        assert on_delivery is not None
        if topic != TOPIC:  # a record of another topic (a dead letter), placed by its key
            self.others.append((topic, key, value, on_delivery))
            return
        local = self.store._dbs[partition].get(key)
        assert local == value, "the record went out before the store had it"
        self.pending.append((key, value, partition, on_delivery))

    def __len__(self) -> int:
        return len(self.pending) + len(self.others)

    def poll(self, _timeout: float) -> int:
        return 0

    def flush(self, _timeout: float) -> int:
        others, self.others = self.others, []
        for n, (topic, key, value, on_delivery) in enumerate(others):
            self.delivered_others.append((topic, key, value))
            on_delivery(None, _Message(0, 100 + n, topic))
        pending, self.pending = self.pending, []
        for key, value, partition, on_delivery in pending:
            offset = self.ends[partition]
            self.ends[partition] += 1
            self.log.append((partition, key, value))
            on_delivery(_Refused() if self.refuse else None, _Message(partition, offset))
        return 0


class _Refused:
    def str(self) -> str:
        return "refused (planted)"


@dataclass
class _Message:
    _partition: int
    _offset: int
    _topic: str = TOPIC

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset


class _Serializers:
    def dumps_key(self, _type: Any, key: Any, serializer: Any = None) -> bytes:
        return json.dumps(key).encode()

    def dumps_value(self, _type: Any, value: Any, serializer: Any = None) -> bytes:
        return json.dumps(value).encode()


@dataclass
class _Topic:
    def get_topic_name(self) -> str:
        return TOPIC


@dataclass
class FakeTable:
    data: FakeStore
    name: str = "orders"
    key_type: Any = str
    value_type: Any = None
    key_serializer: str = "json"
    value_serializer: str = "json"
    changelog_topic: _Topic = field(default_factory=_Topic)


@dataclass
class _Conf:
    key_serializer: str = "raw"
    value_serializer: str = "json"


@dataclass
class _App:
    serializers: _Serializers = field(default_factory=_Serializers)
    conf: _Conf = field(default_factory=_Conf)


@pytest.fixture
def setup(monkeypatch: pytest.MonkeyPatch) -> tuple[ChangelogWriter, FakeTable, FakeProducer]:
    store = FakeStore()
    producer = FakeProducer(store)
    monkeypatch.setattr(changelog, "Producer", lambda _config: producer)
    return ChangelogWriter(_App(), {}), FakeTable(store), producer


def test_a_write_is_local_first_and_the_persisted_offset_follows_delivery(setup: Any) -> None:
    writer, table, producer = setup
    assert writer.handles(table)
    writer.put(table, "o1", 0, {"v": 1})
    writer.put(table, "o1", 0, {"v": 2})
    writer.put(table, "o2", 3, {"v": 1})
    assert table.data.persisted == {}  # nothing delivered yet: nothing claimed
    asyncio.run(writer.flush())
    assert table.data.persisted == {0: 1, 3: 0}
    assert table.data._dbs[0][b'"o1"'] == b'{"v":2}'
    assert [(p, k) for p, k, _ in producer.log] == [(0, b'"o1"'), (0, b'"o1"'), (3, b'"o2"')]


def test_a_partition_revoked_before_delivery_keeps_its_lower_offset(setup: Any) -> None:
    writer, table, _producer = setup
    writer.put(table, "o1", 0, 1)
    writer.put(table, "o2", 1, 1)
    del table.data._dbs[1]  # Faust's revoke drops the partition's database
    asyncio.run(writer.flush())
    assert table.data.persisted == {0: 0}
    assert 1 not in table.data._dbs  # and it is not reopened to write an offset


def test_a_delete_sends_a_tombstone_only_for_a_key_that_is_there(setup: Any) -> None:
    writer, table, producer = setup
    writer.delete(table, "never", 0)
    writer.put(table, "o1", 0, 1)
    writer.delete(table, "o1", 0)
    asyncio.run(writer.flush())
    assert producer.log == [(0, b'"o1"', b"1"), (0, b'"o1"', None)]
    assert b'"o1"' not in table.data._dbs[0]


def test_a_refused_record_fails_the_flush(setup: Any) -> None:
    writer, table, producer = setup
    producer.refuse = True
    writer.put(table, "o1", 0, 1)
    with pytest.raises(BrokerError, match="refused"):
        asyncio.run(writer.flush())
    assert table.data.persisted == {}


VALUES = ["o1", "ü→x", 'a"b\\c', "\u2028", {"order_id": "o1", "n": 2**63 - 1, "f": 0.1, 7: None},
          [{"nested": ["é", True, -1.5e300]}], None]


@pytest.mark.parametrize("value", VALUES)
def test_table_records_are_the_bytes_fausts_codec_writes(value: Any) -> None:
    """The writer encodes keys and values itself (one call instead of Faust's registry and codec
    chain); a reader through Faust (recovery, views, standbys) must find the same bytes."""
    from streams.app import app, orders_table

    assert changelog.encodes_as_table_json(app, orders_table)
    faust_key = app.serializers.dumps_key(orders_table.key_type, value,
                                          serializer=orders_table.key_serializer)
    faust_value = app.serializers.dumps_value(orders_table.value_type, value,
                                              serializer=orders_table.value_serializer)
    if isinstance(value, str):
        assert changelog.table_json(value) == faust_key
    assert changelog.table_json(value) == faust_value


def test_a_table_with_another_codec_goes_through_fausts_serializers(setup: Any) -> None:
    writer, table, producer = setup
    table.value_serializer = "pickle"  # not plain json: the app's serializers (here the fake's)
    writer.put(table, "o1", 0, {"v": 1}, encoded=b"ignored")
    asyncio.run(writer.flush())
    assert producer.log == [(0, b'"o1"', b'{"v": 1}')]


def test_a_slice_of_changes_is_one_local_write_per_partition_before_its_records(setup: Any) -> None:
    """`write`: each partition's puts and deletes in one RocksDB write, every record produced after
    the local writes (the fake producer checks the store has it), a tombstone only for a key that
    was there."""
    writer, table, producer = setup
    writer.put(table, "old", 1, {"v": 0})
    writes_before = table.data._dbs[1].writes
    writer.write(table, [("a", 0, {"v": 1}, None), ("b", 0, {"v": 2}, b'{"v":2}'), ("old", 1, None, None),
                         ("never", 1, None, None), ("c", 1, {"v": 3}, None)])
    asyncio.run(writer.flush())
    assert table.data._dbs[0] == {b'"a"': b'{"v":1}', b'"b"': b'{"v":2}'}
    assert table.data._dbs[1] == {b'"c"': b'{"v":3}'}
    assert table.data._dbs[0].writes == 1 and table.data._dbs[1].writes == writes_before + 1
    assert [(p, k, v) for p, k, v in producer.log][1:] == [
        (0, b'"a"', b'{"v":1}'), (0, b'"b"', b'{"v":2}'), (1, b'"old"', None), (1, b'"c"', b'{"v":3}')]
    assert table.data.persisted == {0: 1, 1: 2}


def test_a_letter_leaves_with_the_records_and_claims_no_offset(setup: Any) -> None:
    """`produce`: a dead letter through the records' own producer, delivered by the same flush;
    its offset is no table's to persist."""
    writer, table, producer = setup
    writer.put(table, "o1", 0, {"failure": "sent letter L1"})
    writer.produce("orders.dlq", b"c1", b'{"id":"L1"}')
    assert producer.delivered_others == []  # nothing before the flush
    asyncio.run(writer.flush())
    assert producer.delivered_others == [("orders.dlq", b"c1", b'{"id":"L1"}')]
    assert table.data.persisted == {0: 0}
