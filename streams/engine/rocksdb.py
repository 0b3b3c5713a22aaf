"""RocksDB memory that does not grow with partitions, tables or orders held.

Faust opens one RocksDB per partition of each table, each with its own block cache (2 GiB by
default) and up to three 64 MiB write buffers: 4 tables x 8 partitions may use 6 GiB of write
buffers alone. Here every database of the worker shares one block cache and one write-buffer
manager that charges the write buffers to that same cache, so the worker's RocksDB memory is
bounded by one number, ORDERFLOW_ROCKSDB_MEMORY_MB, whatever the state it holds.

Registered as the `orderflow-rocksdb://` store (streams/app.py); Faust's own store does the rest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Set
from typing import Any

import rocksdict
from faust.stores import STORES
from faust.stores.rocksdb import RocksDBOptions
from faust.stores.rocksdb import Store as FaustRocksDBStore
from faust.types import TP
from faust.types.tables import CollectionT

SCHEME = "orderflow-rocksdb"
_MB = 1024 * 1024


class Budget:
    """The one block cache and write-buffer manager every database of this process shares."""

    def __init__(self, memory_mb: int) -> None:
        self.memory_mb = memory_mb
        self.cache = rocksdict.Cache(memory_mb * _MB)
        # write buffers count against the cache; at most half of it (no stall: flush sooner)
        self.write_buffers = rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(
            memory_mb * _MB // 2, False, self.cache)


_budget: Budget | None = None
_memory_mb = 256


def budget() -> Budget:
    """Made when the first database opens, with the size `register` was given."""
    global _budget
    if _budget is None:
        _budget = Budget(_memory_mb)
    return _budget


class SharedOptions(RocksDBOptions):
    """Faust's options, with the shared cache and write-buffer manager and small write buffers
    (a partition's memtable fills and flushes sooner instead of holding 64 MiB)."""

    def as_options(self) -> Any:
        options = super().as_options()
        shared = budget()
        table_options = rocksdict.BlockBasedOptions()
        table_options.set_bloom_filter(self.bloom_filter_size, True)
        table_options.set_block_cache(shared.cache)
        table_options.set_cache_index_and_filter_blocks(True)
        table_options.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
        options.set_block_based_table_factory(table_options)
        options.set_write_buffer_manager(shared.write_buffers)
        return options


class Store(FaustRocksDBStore):
    """Faust's RocksDB store (rocksdict driver) with `SharedOptions`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.use_rocksdict:
            raise RuntimeError("orderflow's RocksDB store needs the rocksdict driver")
        given = dict(self.options or {})
        self.rocksdb_options = SharedOptions(
            **{**given, "write_buffer_size": int(given.get("write_buffer_size", 8 * _MB)),
               "max_write_buffer_number": int(given.get("max_write_buffer_number", 2)),
               "block_cache_size": 0},
            use_rocksdict=True)

    def revoke_partitions(self, table: CollectionT, tps: Set[TP]) -> None:
        """Faust's, without its `gc.collect()`: a full collection walks the whole heap (a quarter of
        a second at 200,000 orders, per table, at every rebalance) while the event loop waits. A
        database dropped here closes, and releases its lock, when its last reference goes; one
        still held for a moment (a view's read) is retried by Faust's reopen, once a second."""
        for tp in tps:
            if tp.topic in table.changelog_topic.topics and self._dbs.pop(tp.partition, None) is not None:
                self.logger.info("closing db %s partition %s", tp.topic, tp.partition)

    async def _try_open_db_for_partition(self, partition: int, max_retries: int = 30,
                                         retry_delay: float = 1.0, generation_id: int = 0) -> Any:
        """Faust's, with the database opened in a thread first: Faust opens it on the event loop,
        and a new partition's database took up to 210 ms to create (a worker's first start at a
        million orders), no `/health` answered meanwhile. A database locked still (a revoked copy
        not closed yet) is left to Faust's own retries."""
        if partition not in self._dbs:
            try:
                db = await asyncio.to_thread(self._open_for_partition, partition)
            except Exception:  # any error: Faust tries again below, and raises what it cannot retry
                db = None
            if db is not None:
                self._dbs.setdefault(partition, db)
        return await super()._try_open_db_for_partition(partition, max_retries, retry_delay, generation_id)

    async def stop(self) -> None:
        """Faust's, without its `gc.collect()` (see `revoke_partitions`)."""
        self.logger.info("Closing rocksdb on stop")
        self._dbs.clear()

    def put_local(self, partition: int, key: bytes, value: bytes | None) -> None:
        """The store half of Faust's `table[key] = value` (the changelog record is the caller's)."""
        self._key_index[key] = partition
        self._db_for_partition(partition).put(key, value)

    def local_batch(self) -> rocksdict.WriteBatch:
        """An empty write batch for `write_local` (the databases are opened in raw mode)."""
        return rocksdict.WriteBatch(raw_mode=True)

    def write_local(self, partition: int, batch: rocksdict.WriteBatch, deleted: Iterable[bytes] = ()) -> None:
        """Many puts and deletes (`deleted`: their keys) of one partition in one RocksDB write (a
        put at a time cost about twice as much per record). Faust's key index, a cache of which
        partition holds a key, forgets the deleted keys and is not told of the others: a key it does
        not know is looked for in the current event's partition, or in every one."""
        self._db_for_partition(partition).write(batch)
        for key in deleted:
            self._key_index.pop(key, None)

    def has_local(self, partition: int, key: bytes) -> bool:
        return self._db_for_partition(partition).get(key) is not None

    def delete_local(self, partition: int, key: bytes) -> bool:
        """Remove `key` from the partition's database; False when it was not there."""
        db = self._db_for_partition(partition)
        if db.get(key) is None:
            return False
        db.delete(key)
        self._key_index.pop(key, None)
        return True

    def persist_offset(self, tp: TP, offset: int) -> None:
        """Faust's `set_persisted_offset`, for a partition still open here only: one revoked since
        keeps the lower offset it had, and a later assignment reads a little more changelog."""
        if tp.partition in self._dbs:
            self.set_persisted_offset(tp, offset)

    def write_changelog_batch(self, tp: TP, batch: rocksdict.WriteBatch, last_offset: int) -> None:
        """Write a batch of changelog records of `tp` together with its new persisted offset (one
        atomic write: a crash leaves the data and the offset Faust resumes from in step)."""
        batch.put(self.offset_key, str(last_offset).encode())
        self._db_for_partition(tp.partition).write(batch)


def register(memory_mb: int) -> str:
    """Make `orderflow-rocksdb://` a Faust store URL whose databases share `memory_mb` MiB;
    returns the URL to give the app."""
    global _memory_mb
    _memory_mb = memory_mb
    STORES.aliases[SCHEME] = f"{__name__}:Store"
    return f"{SCHEME}://"
