"""orderflow's RocksDB store (streams/engine/rocksdb.py) on real rocksdict databases: a rebalance
or a stop closes the partitions' databases without a full garbage collection, which at a large
heap holds the event loop for a quarter of a second per table; an assignment opens them off the
event loop."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from pathlib import Path

import faust
import pytest
from faust.types import TP

from streams.engine.rocksdb import Store, register


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    collections: list[int] = []
    monkeypatch.setattr(gc, "collect", lambda generation=2: collections.append(generation) or 0)
    register(16)
    app = faust.App("rocksdb-store-test", store="memory://", datadir=str(tmp_path))
    table = app.Table("orders", partitions=2)
    s = Store("orderflow-rocksdb://", app, table)
    gc.disable()  # a reference cycle would keep a database (and its lock) open: prove there is none
    try:
        yield s
    finally:
        gc.enable()
    assert collections == [], "the store ran a full garbage collection"


def test_a_revoked_partition_is_closed_and_reopens_with_its_data(store: Store) -> None:
    s = store
    s._db_for_partition(0).put(b"order-1", b"paid")
    s._db_for_partition(1).put(b"order-2", b"new")
    s.revoke_partitions(s.table, {TP(s.table.changelog_topic.get_topic_name(), 0)})
    assert sorted(s._dbs) == [1]  # the other partition stays open
    # reopening needs the RocksDB lock: it was released when the store let go of the database
    assert s._db_for_partition(0).get(b"order-1") == b"paid"


async def test_a_stop_closes_every_partition(store: Store) -> None:
    s = store
    s._db_for_partition(0).put(b"order-1", b"paid")
    await s.stop()
    assert s._dbs == {}
    assert s._db_for_partition(0).get(b"order-1") == b"paid"


async def test_an_assigned_partition_is_opened_off_the_event_loop_and_a_failed_open_is_retried(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    s = store
    opened_in: list[int] = []
    open_for_partition = s._open_for_partition

    def recording(partition: int) -> object:
        opened_in.append(threading.get_ident())
        if len(opened_in) == 2:
            raise OSError("lock held by a revoked copy")  # the thread's try fails: Faust's retries
        return open_for_partition(partition)

    monkeypatch.setattr(s, "_open_for_partition", recording)
    db = await s._try_open_db_for_partition(0)
    db.put(b"order-1", b"paid")
    assert opened_in == [opened_in[0]] and opened_in[0] != threading.get_ident()
    assert s._db_for_partition(0) is db
    db1 = await s._try_open_db_for_partition(1)  # opened by Faust's own path after the failure
    assert opened_in[2] == threading.get_ident() and s._dbs[1] is db1
    assert s._db_for_partition(0).get(b"order-1") == b"paid"
