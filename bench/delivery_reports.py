"""Who serves a producer's delivery reports while the event loop is busy, and what it costs.

    python bench/delivery_reports.py [--rate 20000] [--busy 1.0] [--seconds 6] [--rounds 2]

A worker's flushes wait for confluent-kafka's delivery reports in a thread
(`asyncio.to_thread(producer.flush)`, streams/engine/changelog.py, streams/feed.py). confluent-kafka
takes the GIL for every report, with or without a callback and with `delivery.report.only.error`
too (its Producer.c, `dr_msg_cb`: `CallState_get` comes first). This measures, on the project's
broker, an event loop (uvloop) that spends `--busy` of its time in Python work (1 ms slices with a
bare turn between at 1, else 10 ms slices and the rest asleep) while it produces `--rate` records
a second (800 bytes, 8 partitions, the changelog writer's producer settings) and waits for them
after every 150 ms, in three ways:

- `thread`: the flush in a thread, a callback per record (the changelog writer's way);
- `thread-error-only`: the same with `delivery.report.only.error`: no Python call for a delivered
  record (the change feed's way);
- `loop`: no thread, `poll(0)` on the loop every millisecond until nothing is left.

Printed per way: the loop's work done a second (slices of Python work), the flush's median and
90th percentile, and the reports served.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WAYS = ("thread", "thread-error-only", "loop")
CYCLE_S = 0.15


def work_unit() -> int:
    """A few microseconds of interpreter work, the kind the loop does per event."""
    total = 0
    for i in range(2000):
        total += i * i % 7
    return total + len({str(i): (i, str(i)) for i in range(50)})


async def one_way(way: str, bootstrap: str, topic: str, rate: int, busy: float,
                  seconds: float) -> str:
    from confluent_kafka import KafkaError, Message, Producer

    from streams.kafka_clients import FLUSHED_LINGER_MS, LIBRDKAFKA_LOG

    conf: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": LIBRDKAFKA_LOG,
                            "enable.idempotence": True,
                            "acks": "all", "linger.ms": FLUSHED_LINGER_MS, "compression.type": "lz4"}
    if way == "thread-error-only":
        conf["delivery.report.only.error"] = True
    producer = Producer(conf)
    reports: list[tuple[str, int, int]] = []

    def on_delivery(error: KafkaError | None, message: Message) -> None:
        if error is None:
            reports.append((str(message.topic()), int(message.partition() or 0),
                            int(message.offset() or 0)))

    callback = None if way == "thread-error-only" else on_delivery
    value, per_cycle = b"x" * 800, int(rate * CYCLE_S)
    stop = time.monotonic() + seconds
    flushes: list[float] = []
    units = 0

    async def produce_and_flush() -> None:
        while time.monotonic() < stop:
            started = time.monotonic()
            for i in range(per_cycle):
                producer.produce(topic, value, b"k%d" % i, partition=i % 8, on_delivery=callback)
                if i % 1000 == 999:
                    producer.poll(0)
            waited = time.monotonic()
            if way == "loop":
                producer.poll(0)
                while len(producer):
                    await asyncio.sleep(0.001)
                    producer.poll(0)
            else:
                while await asyncio.to_thread(producer.flush, 30.0):
                    pass
            flushes.append(time.monotonic() - waited)
            await asyncio.sleep(max(0.0, CYCLE_S - (time.monotonic() - started)))

    async def loop_work() -> None:
        nonlocal units
        # slices of 1 ms with a bare turn between (busy 1), else of 10 ms with a real sleep between
        # (uvloop's timers count whole milliseconds)
        slice_s = 0.001 if busy >= 1 else 0.01
        idle_s = slice_s * (1 - busy) / busy
        while time.monotonic() < stop:
            slice_started = time.perf_counter()
            while time.perf_counter() - slice_started < slice_s:
                work_unit()
                units += 1
            await asyncio.sleep(idle_s)

    started = time.monotonic()
    await asyncio.gather(produce_and_flush(), loop_work())
    elapsed = time.monotonic() - started
    producer.flush(30.0)
    flushes.sort()
    p50 = flushes[len(flushes) // 2] * 1e3
    p90 = flushes[int(len(flushes) * 0.9)] * 1e3
    served = len(reports) if callback is not None else "-"
    return (f"{way:18s} loop work {units / elapsed:8,.0f} slices/s   flush p50 {p50:7.1f} ms "
            f"p90 {p90:7.1f} ms   flushes {len(flushes):3d}   reports to a callback {served}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=20000, help="records a second")
    parser.add_argument("--busy", type=float, default=1.0,
                        help="the loop's share of time in Python work (0.1-1)")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if not 0.1 <= args.busy <= 1 or args.rate <= 0 or args.seconds <= 0 or args.rounds <= 0:
        parser.error("--busy must be 0.1-1; --rate, --seconds and --rounds above 0")

    import uvloop

    from bench.run import fresh_topics
    from streams.tools.localkafka import LocalKafka
    from tests.conftest import free_port_pair

    workdir = Path(tempfile.mkdtemp(prefix="delivery-reports-"))
    broker = LocalKafka(port=free_port_pair(), data_dir=workdir / "kafka")
    print("starting the project's Kafka broker", flush=True)
    broker.start()
    try:
        topic = fresh_topics(broker).events_topic  # 8 partitions, a name of its own
        for round_ in range(1, args.rounds + 1):
            print(f"round {round_} of {args.rounds} (busy {args.busy:.0%}, {args.rate:,} records/s)",
                  flush=True)
            for way in WAYS:
                print("  " + uvloop.run(one_way(way, broker.bootstrap, topic, args.rate, args.busy,
                                                args.seconds)), flush=True)
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as exc:  # a measuring run that fails says why in one line
        raise SystemExit(f"delivery_reports: {type(exc).__name__}: {exc}") from None
