"""What our processing costs without Faust's per-message machinery: a measurement, not a product.

    python bench/probe.py [--orders 20000] [--events-per-order 10]

Runs the same traffic as bench/run.py through the same `Processor` (decode, state machine, ids,
parking) driven Quix-style: confluent-kafka delivers batches, orders live in rocksdict, and each
batch ends with one write per changed order to RocksDB and one changelog record per changed order,
then a producer flush and an offset commit. No Faust, no lanes, no effects. The gap between this
and the Faust worker is what Faust's per-message stream costs us. Appends to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from confluent_kafka import Consumer, Producer  # noqa: E402
from rocksdict import Rdict  # noqa: E402

from bench.run import published  # noqa: E402
from schemas.envelope import decode  # noqa: E402
from streams.deadletters import Source  # noqa: E402
from streams.effects import Effects  # noqa: E402
from streams.errors import InvalidEvent  # noqa: E402
from streams.lifecycle import DEFAULT  # noqa: E402
from streams.machine import Limits, Order  # noqa: E402
from streams.processor import Policy, Processor  # noqa: E402
from streams.retry import Backoff, DueIndex  # noqa: E402


class BatchStore:
    """Orders in rocksdict behind a per-batch write-back map (what Quix Streams does per checkpoint)."""

    def __init__(self, path: Path) -> None:
        self.db = Rdict(str(path))
        self.dirty: dict[str, Order] = {}

    def get(self, order_id: str) -> Order | None:
        if order_id in self.dirty:
            return self.dirty[order_id]
        raw = self.db.get(order_id)
        return None if raw is None else dict(json.loads(raw))

    def put(self, order: Order) -> None:
        self.dirty[order["order_id"]] = order

    def add_to_client(self, order: Order) -> None:
        pass

    def checkpoint(self, producer: Producer, changelog: str, partition_of: dict[str, int]) -> int:
        for order_id, order in self.dirty.items():
            value = json.dumps(order).encode()
            self.db[order_id] = value
            producer.produce(changelog, key=order_id.encode(), value=value,
                             partition=partition_of[order_id])
        written, self.dirty = len(self.dirty), {}
        return written


async def run(settings: Any, total: int, workdir: Path) -> dict[str, float]:
    store = BatchStore(workdir / "orders.rdb")

    async def nowhere(*_args: Any) -> None:
        return None

    processor = Processor(
        store=store, lifecycle=DEFAULT,
        policy=Policy(Limits(), park_timeout_s=300, retention_s=7 * 24 * 3600.0),
        effects=Effects(""), backoff=Backoff(), due=DueIndex(),
        send_dead_letter=nowhere, send_retry_notice=nowhere,
    )
    changelog = f"probe-changelog-{uuid.uuid4().hex[:6]}"
    producer = Producer({**settings.librdkafka(), "linger.ms": 5, "compression.type": "lz4"})
    consumer = Consumer({**settings.librdkafka(), "group.id": f"probe-{uuid.uuid4().hex[:6]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(settings.librdkafka())
    admin.create_topics([NewTopic(changelog, settings.partitions, 1)])[changelog].result()
    consumer.subscribe([settings.events_topic])
    done, started, cpu0, writes = 0, 0.0, 0.0, 0
    while done < total:
        batch = consumer.consume(num_messages=2000, timeout=1.0)
        if not batch:
            continue
        if not started:
            started = time.monotonic()
            usage = resource.getrusage(resource.RUSAGE_SELF)
            cpu0 = usage.ru_utime + usage.ru_stime
        partition_of: dict[str, int] = {}
        for message in batch:
            if message.error():
                continue
            source = Source(message.topic(), message.partition(), message.offset())
            try:
                envelope = decode(message.value(), message.key(), DEFAULT.event_types)
            except InvalidEvent:
                continue
            partition_of[envelope["order_id"]] = source.partition
            await processor.on_event(envelope, source)
        writes += store.checkpoint(producer, changelog, partition_of)
        producer.flush()
        consumer.commit(asynchronous=False)
        done += len(batch)
    elapsed = time.monotonic() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    consumer.close()
    return {"events": done, "seconds": elapsed, "rate": done / elapsed,
            "cpu_us": (usage.ru_utime + usage.ru_stime - cpu0) / done * 1e6, "writes": writes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--events-per-order", type=int, default=10)
    args = parser.parse_args()
    with published(args, "orderflow-probe-") as (settings, total, workdir):
        result = asyncio.run(run(settings, total, workdir))
    text = "\n".join([
        f"\n## Probe: the same processor without Faust's per-message machinery — "
        f"{time.strftime('%Y-%m-%d %H:%M')}",
        "",
        f"{result['events']} events ({args.orders} orders), confluent-kafka batches of up to 2000, "
        "orders in rocksdict, one RocksDB write and one changelog record per changed order per batch, "
        "flush and commit per batch; one process, no lanes, no effects.",
        "",
        "| variant | events | seconds | events/s | CPU µs/event | order writes |",
        "|---|---|---|---|---|---|",
        f"| processor logic, Quix-style batches | {result['events']} | {result['seconds']:.1f} | "
        f"{result['rate']:.0f} | {result['cpu_us']:.0f} | {result['writes']} |",
    ]) + "\n"
    print(text)
    with (ROOT / "bench" / "RESULTS.md").open("a") as out:
        out.write(text)


if __name__ == "__main__":
    main()
