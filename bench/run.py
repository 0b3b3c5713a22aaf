"""Throughput of the order processor vs a bare Faust agent and the documented Faust Table way.

    python bench/run.py [--orders 20000] [--events-per-order 10]

Starts its own broker (the project's local Kafka), publishes the events once, then runs each
variant as a real `faust worker` process with a fresh consumer group over the same topic, timing
from worker-ready to the group's committed offsets reaching the end, and reading the process's CPU
time from /proc. Appends the results to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, TopicPartition

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streams.config import Settings  # noqa: E402
from streams.tools.localkafka import KAFKA_VERSION, LocalKafka  # noqa: E402
from streams.tools.publisher import Publisher  # noqa: E402
from streams.tools.topics import create_topics  # noqa: E402
from tests.conftest import free_port, free_port_pair  # noqa: E402
from tests.helpers import make_event  # noqa: E402

KINDS = ["created", "accepted", "paid", "shipped", "delivered"]


def events(orders: int, per_order: int) -> list[dict]:
    """Each order's full lifecycle, then repeats of its events (duplicates to drop) up to per_order."""
    out = []
    for n in range(orders):
        chain = [make_event(f"o{n}", k, client_id=f"c{n % 1000}") for k in KINDS]
        out.extend(chain)
        out.extend(chain[i % len(chain)] for i in range(per_order - len(chain)))
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        offsets = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return sum(max(tp.offset, 0) for tp in offsets)
    except KafkaException:  # the group coordinator is still loading: nothing committed yet
        return 0
    finally:
        consumer.close()


def fresh_topics(broker: LocalKafka) -> Settings:
    """Settings with topics of their own (8 partitions) on `broker`, created."""
    u = uuid.uuid4().hex[:6]
    settings = Settings.from_env({"KAFKA_BOOTSTRAP": broker.bootstrap, "ORDERFLOW_PARTITIONS": "8",
                                  "ORDERFLOW_EVENTS_TOPIC": f"bench-events-{u}",
                                  "ORDERFLOW_RETRY_TOPIC": f"bench-retry-{u}",
                                  "ORDERFLOW_DLQ_TOPIC": f"bench-dlq-{u}"})
    create_topics(settings)
    return settings


@contextmanager
def published(args: argparse.Namespace, prefix: str) -> Iterator[tuple[Settings, int, Path]]:
    """A broker of its own with the benchmark's events published once: (settings, events, workdir)."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    broker = LocalKafka(port=free_port_pair(), data_dir=workdir / "kafka")
    broker.start()
    try:
        settings = fresh_topics(broker)
        batch = events(args.orders, args.events_per_order)
        print(f"publishing {len(batch)} events over {args.orders} orders", file=sys.stderr)
        report = Publisher(settings).publish(batch)
        assert report.ok, report.problems[:3]
        yield settings, len(batch), workdir
    finally:
        broker.stop()


def run_variant(name: str, app: str, settings: Settings, total: int, workdir: Path, loop: str = "aio",
                root: Path = ROOT, **extra: str) -> dict:
    """Run `app` as a `faust worker` over the settings' topics, from the code in `root` (this
    checkout, or an earlier commit's, bench/peers/run.py --before), timed by its commits."""
    logname = re.sub(r"[^A-Za-z0-9]+", "-", name.split(" (")[0]).strip("-") + f"-{loop}"
    group = f"bench-{logname}-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "KAFKA_BOOTSTRAP": settings.bootstrap, "ORDERFLOW_APP_ID": group,
           "ORDERFLOW_EVENTS_TOPIC": settings.events_topic, "ORDERFLOW_RETRY_TOPIC": settings.retry_topic,
           "ORDERFLOW_DLQ_TOPIC": settings.dlq_topic, "ORDERFLOW_CHANGES_TOPIC": settings.changes_topic,
           "ORDERFLOW_PARTITIONS": str(settings.partitions),
           "ORDERFLOW_STATE_DIR": str(workdir / group), "ORDERFLOW_COMMIT_INTERVAL_S": "0.5",
           "ORDERFLOW_SWEEP_INTERVAL_S": "5", "ORDERFLOW_WEB_HOST": "127.0.0.1", "PYTHONPATH": str(root),
           **extra}
    port = free_port()
    env["BENCH_WEB_PORT"] = str(port)
    log = workdir / f"{logname}.log"
    proc = subprocess.Popen([sys.executable, "-m", "faust", "-A", app, "-L", loop, "worker", "-l", "warn",
                             "--web-port", str(port), "--web-host", "127.0.0.1"],
                            cwd=root, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    return time_by_commits(name, proc, log, settings, group, total)


def time_by_commits(name: str, proc: subprocess.Popen[bytes], log: Path, settings: Settings, group: str,
                    total: int) -> dict:
    """Time `proc` (consuming settings.events_topic as `group`) from its first committed offset to
    the group's commits covering all `total` events; CPU time from /proc. Stops it after."""
    try:
        start_cpu: float | None = None
        start: float | None = None
        first = 0
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"{name} exited; see {log}")
            done = committed(settings.bootstrap, group, settings.events_topic, settings.partitions)
            if start is None and done > 0:
                start, start_cpu = time.monotonic(), cpu_seconds(proc.pid)
                first = done
            if done >= total:
                break
            print(f"  {name}: {done}/{total} committed", file=sys.stderr, flush=True)
            time.sleep(0.25)
        if start is None or start_cpu is None:
            raise SystemExit(f"{name}: all {total} events were done before the first look; too few "
                             "to measure, use more --orders")
        elapsed = time.monotonic() - start
        cpu = cpu_seconds(proc.pid) - start_cpu
        measured = total - first
    finally:
        proc.terminate()
        proc.wait(60)
    if measured <= 0 or elapsed <= 0:
        raise SystemExit(f"{name}: all {total} events were done before the first look; too few to "
                         "measure, use more --orders")
    return {"name": name, "events": measured, "seconds": elapsed, "rate": measured / elapsed,
            "cpu_us": cpu / measured * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--events-per-order", type=int, default=10)
    args = parser.parse_args()
    with published(args, "orderflow-bench-") as (settings, total, workdir):
        results = [run_variant(n, a, settings, total, workdir, loop=loop, **extra)
                   for n, a, loop, extra in [
            ("bare Faust agent (decode only)", "bench.baseline_apps:bare", "aio", {}),
            ("Faust agent + Table, documented way", "bench.baseline_apps:table", "aio", {}),
            ("orderflow processor (uvloop, its default)", "streams.app", "aio", {}),
            ("bare Faust agent on uvloop", "bench.baseline_apps:bare", "uvloop", {}),
            ("orderflow processor, no change feed", "streams.app", "aio", {"ORDERFLOW_CHANGES_TOPIC": ""}),
        ]]
    write(results, args, total)


def write(results: list[dict], args: argparse.Namespace, total: int) -> None:
    import faust

    bare, table, ours, bare_uvloop, no_feed = results
    lines = [
        f"\n## Processor throughput — {time.strftime('%Y-%m-%d %H:%M')}",
        "",
        f"{total} events over {args.orders} orders (5 lifecycle events + repeats), 8 partitions, one worker,",
        f"Apache Kafka {KAFKA_VERSION} (local KRaft) on loopback; {os.cpu_count()} cores; Python "
        f"{platform.python_version()}; faust-streaming {faust.__version__}; no effects.",
        "",
        "| variant | events | seconds | events/s | CPU µs/event |",
        "|---|---|---|---|---|",
        *[f"| {r['name']} | {r['events']} | {r['seconds']:.1f} | {r['rate']:.0f} | {r['cpu_us']:.0f} |"
          for r in results],
        "",
        f"Ratios: processor / bare agent = {ours['rate'] / bare['rate']:.2f}x; "
        f"processor / Table way = {ours['rate'] / table['rate']:.2f}x; "
        f"processor / bare agent on uvloop = {ours['rate'] / bare_uvloop['rate']:.2f}x; "
        f"processor with the change feed / without = {ours['rate'] / no_feed['rate']:.2f}x.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    results_file = ROOT / "bench" / "RESULTS.md"
    if not results_file.exists():
        results_file.write_text("# Benchmark results\n\nWritten by the scripts in bench/.\n")
    with results_file.open("a") as out:
        out.write(text)


if __name__ == "__main__":
    main()
