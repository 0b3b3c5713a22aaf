"""Latency at a steady rate: from an event's `occurred_at` to its application, with N workers.

    python bench/latency.py [--rate 2000] [--seconds 60] [--warmup 40] [--workers 2]
                            [--worker-env NAME=VALUE ...] [--keep] [--results]

Starts its own broker (the project's local Kafka), N `faust worker` processes on the default
settings, and publishes order lifecycles (created, paid, shipped, delivered; 2,000 orders in
flight, 1,000 clients) at `--rate` events per second, paced, each event stamped with
`occurred_at` = the moment it is produced (the publisher runs on the same machine, so one clock).
A consumer of the change feed (`orders.changes`) takes every record as it arrives. Per event
published after the warm-up:

- *applied*: the change record's `at` (the worker's clock when it applied the event) minus
  `occurred_at`: what the contract calls processing latency;
- *visible*: the change record's arrival at the consumer minus `occurred_at`: what a downstream
  service waits (the ack loop's flush sends change records every ~20 ms; the reader fetches every
  10 ms, so up to 10 ms of it are the reader's);
- *acknowledged*: the broker's ack to the publisher minus `occurred_at`: a tail here is the
  broker's (or the machine's), before any worker could have seen the event.

Reports p50 / p90 / p99 / p99.9 / max of both (exact, per event; milliseconds are the clocks'
resolution), the workers' event-loop lag (`orderflow_event_loop_lag_seconds`), and where the slow
events fall: how many applied over 100 ms, and in how many distinct seconds of the run (a tail
that comes in bursts points at a periodic step: flushes, commits, ticks). Measures, never asserts:
a small run is in the test suite only to prove the command works.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import random
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import fresh_topics  # noqa: E402
from bench.scale import keep_or_remove, loop_lag  # noqa: E402
from streams.core.machine import parse_time, rfc3339  # noqa: E402
from streams.tools.localkafka import KAFKA_VERSION, LocalKafka  # noqa: E402
from tests.conftest import free_port_pair  # noqa: E402
from tests.workers import Worker  # noqa: E402

STEPS = ("created", "paid", "shipped", "delivered")
IN_FLIGHT = 2_000
CLIENTS = 1_000
SLOW_S = 0.1


def say(text: str) -> None:
    print(f"latency: {text}", file=sys.stderr, flush=True)


def lifecycles(seed: int) -> Iterator[tuple[str, str, str, str]]:
    """(event_id, order_id, client_id, type) on and on: each event moves a random order of the
    IN_FLIGHT open ones one step; a delivered order is replaced by a new one."""
    rng = random.Random(seed)
    opened = 0
    open_orders: list[list[int]] = []  # [order number, next step]
    while True:
        while len(open_orders) < IN_FLIGHT:
            open_orders.append([opened, 0])
            opened += 1
        slot = rng.randrange(len(open_orders))
        number, step = open_orders[slot]
        yield f"e{number}-{step}", f"o{number}", f"c{number % CLIENTS}", STEPS[step]
        if step + 1 == len(STEPS):
            open_orders[slot] = open_orders[-1]
            open_orders.pop()
        else:
            open_orders[slot][1] = step + 1


@dataclass
class Feed:
    """The change feed, read in a thread: event_id -> (applied at, arrived at, partition)."""

    bootstrap: str
    topic: str
    partitions: int
    seen: dict[str, tuple[float, float, int]] = field(default_factory=dict)  # + partition
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Feed:
        # a fetch every 10 ms (not one per record: the broker shares the 2 cores with the workers)
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "enable.auto.commit": False,
                             "group.id": f"latency-{uuid.uuid4().hex[:6]}", "fetch.wait.max.ms": 10,
                             "fetch.min.bytes": 1_000_000})
        consumer.assign([TopicPartition(self.topic, p, 0) for p in range(self.partitions)])
        threading.Thread(target=self._run, args=(consumer,), daemon=True).start()
        return self

    def _run(self, consumer: Consumer) -> None:
        try:
            while not self._stop.is_set():
                for msg in consumer.consume(500, 0.005):  # returns at the timeout: keep it short
                    arrived = time.time()
                    if msg.error():
                        continue
                    record = json.loads(msg.value() or b"{}")
                    applied = parse_time(record["at"])
                    if applied is not None:
                        self.seen.setdefault(record["event_id"], (applied, arrived, msg.partition() or 0))
        finally:
            consumer.close()

    def stop(self) -> None:
        self._stop.set()


def publish(bootstrap: str, topic: str, rate: float, seconds: float, seed: int,
            stored: dict[str, float]) -> dict[str, float]:
    """Events at `rate` per second for `seconds`, paced in 5 ms steps: event_id -> occurred_at.
    `stored` gets event_id -> when the broker acknowledged it (the publisher's own wait: a tail
    there is the broker's, before any worker could see the event)."""
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random",
                         "linger.ms": 1, "acks": "all"})
    occurred: dict[str, float] = {}

    def acknowledged(event_id: str) -> Callable[[object, object], None]:
        def on_delivery(err: object, _msg: object) -> None:
            if err is None:
                stored[event_id] = time.time()
        return on_delivery

    events = lifecycles(seed)
    started = time.time()
    sent, reported = 0, started
    while (now := time.time()) < started + seconds:
        due = int((now - started) * rate)
        while sent < due:
            event_id, order_id, client_id, kind = next(events)
            at = time.time()
            value = json.dumps({"event_id": event_id, "order_id": order_id, "client_id": client_id,
                                "type": kind, "occurred_at": rfc3339(at), "schema_version": 1})
            producer.produce(topic, key=client_id.encode(), value=value.encode(),
                             on_delivery=acknowledged(event_id))
            occurred[event_id] = math.floor(at * 1000) / 1000  # as the stamp says (ms)
            sent += 1
        producer.poll(0)
        if now - reported >= 10:
            reported = now
            say(f"  published {sent:,} ({now - started:.0f} s)")
        time.sleep(0.005)
    if producer.flush(60) != 0:
        raise SystemExit("the broker did not take every event")
    return occurred


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "p99.9": at(0.999), "max": ordered[-1]}


def ms(row: dict[str, float]) -> str:
    return " / ".join(f"{row[k] * 1000:,.0f}" for k in ("p50", "p90", "p99", "p99.9", "max"))


def run(args: argparse.Namespace) -> str:
    workdir = Path(tempfile.mkdtemp(prefix="orderflow-latency-"))
    broker = LocalKafka(port=free_port_pair(), data_dir=workdir / "kafka")
    broker.start()
    workers: list[Worker] = []
    try:
        settings = fresh_topics(broker)
        settings = dataclasses.replace(settings, app_id=f"latency-{uuid.uuid4().hex[:6]}")
        workers = [Worker(settings, workdir, f"w{n}", **args.worker_env).start() for n in range(args.workers)]
        for worker in workers:
            worker.wait_ready(180)
        say(f"{len(workers)} workers ready; publishing {args.rate:g} events/s for "
            f"{args.warmup + args.seconds:g} s ({args.warmup:g} s warm-up)")
        feed = Feed(settings.bootstrap, settings.changes_topic, settings.partitions).start()
        started = time.time()
        stored: dict[str, float] = {}
        occurred = publish(settings.bootstrap, settings.events_topic, args.rate,
                           args.warmup + args.seconds, args.seed, stored)
        measured = {e: t for e, t in occurred.items() if t >= started + args.warmup}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(measured.keys() - feed.seen.keys()) > 0:
            time.sleep(0.5)
        feed.stop()
        missing = len(measured.keys() - feed.seen.keys())
        got = [(measured[e], *feed.seen[e]) for e in measured if e in feed.seen]
        applied = [max(0.0, at - t) for t, at, _, _ in got]
        visible = [max(0.0, arrived - t) for t, _, arrived, _ in got]
        acked = [max(0.0, stored[e] - measured[e]) for e in measured if e in stored]
        slow = [(t, partition) for t, at, _, partition in got if at - t > SLOW_S]
        slow_seconds = Counter(int(t - started) for t, _ in slow)
        slow_partitions = Counter(partition for _, partition in slow)
        lags = "; ".join(f"{w.name}: {loop_lag(w.url)}" for w in workers)
        return table(args, len(got), missing, percentiles(applied), percentiles(visible),
                     percentiles(acked), slow_seconds, slow_partitions, lags)
    finally:
        for worker in workers:
            worker.stop()
        broker.stop()
        keep_or_remove(workdir, args.keep)


def table(args: argparse.Namespace, measured: int, missing: int, applied: dict[str, float],
          visible: dict[str, float], acked: dict[str, float], slow_seconds: Counter[int],
          slow_partitions: Counter[int], lags: str) -> str:
    slow = sum(slow_seconds.values())
    worst = ", ".join(f"{second} s: {count}" for second, count in slow_seconds.most_common(5)) or "none"
    by_partition = ", ".join(f"{p}: {n}" for p, n in sorted(slow_partitions.items())) or "none"
    rows = [
        ("events measured (after the warm-up)", f"{measured:,} ({missing} not seen on the feed)"),
        ("applied, ms: p50 / p90 / p99 / p99.9 / max", ms(applied)),
        ("visible on the change feed, ms: p50 / p90 / p99 / p99.9 / max", ms(visible)),
        ("acknowledged to the publisher, ms: p50 / p90 / p99 / p99.9 / max", ms(acked)),
        (f"applied over {SLOW_S * 1000:.0f} ms", f"{slow:,} in {len(slow_seconds)} distinct seconds "
                                                f"of {args.seconds:g}; worst seconds: {worst}"),
        (f"applied over {SLOW_S * 1000:.0f} ms, by partition", by_partition),
        ("event-loop beats late", lags),
    ]
    width = max(len(name) for name, _ in rows)
    changed = ", ".join(f"{k}={v}" for k, v in args.worker_env.items()) or "default settings"
    header = (f"{args.rate:g} events/s for {args.seconds:g} s after {args.warmup:g} s of warm-up, "
              f"{args.workers} workers, 8 partitions, {changed}; Apache Kafka {KAFKA_VERSION} "
              f"(local KRaft), publisher and consumer on the same machine; {platform.machine()}, "
              f"{len(os.sched_getaffinity(0))} cores; Python {platform.python_version()}; "
              f"{time.strftime('%Y-%m-%d')}")
    lines = [header, "", f"| {'measure'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {name.ljust(width)} | {value} |" for name, value in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=2000.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured seconds")
    # a fresh broker's JIT compiler takes half a core or more for the first 15-25 s of traffic
    # (bench/RESULTS.md, 2026-12-02): measuring after 40 s leaves that out
    parser.add_argument("--warmup", type=float, default=40.0, help="seconds published before measuring")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--worker-env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for the workers (repeatable), e.g. ORDERFLOW_LANES=16")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (worker logs)")
    parser.add_argument("--results", action="store_true", help="append the table to bench/RESULTS.md")
    args = parser.parse_args()
    if any("=" not in item for item in args.worker_env):
        parser.error("--worker-env takes NAME=VALUE")
    args.worker_env = dict(item.split("=", 1) for item in args.worker_env)
    if args.rate <= 0 or args.seconds <= 0 or args.warmup < 0 or args.workers < 1:
        parser.error("--rate and --seconds must be positive, --warmup not negative, --workers at least 1")
    report = run(args)
    print(report)
    if args.results:
        with (ROOT / "bench" / "RESULTS.md").open("a") as results:
            results.write(f"\n## Latency at a steady rate (bench/latency.py)\n\n{report}\n")


if __name__ == "__main__":
    main()
