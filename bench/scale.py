"""A million orders on one worker: rate as state grows, stalls, memory, state size, restarts.

    python bench/scale.py [--orders 1000000] [--clients 10000] [--duplicates 0.0]

Starts its own broker (the project's local Kafka), publishes N orders with full lifecycles
(created, paid, shipped, delivered; one in ten cancelled after created), their clients skewed so
that 1% of the clients own half of the orders, and runs one `faust worker` (a real process):

1. processing from an empty state: events/s per tenth of the events (first and last slice), the
   longest `/health` answer (probed every 50 ms by bench/health_probe.py, twice side by side: at
   the benchmark's priority and at a raised one), the event loop's lag (from the worker's
   `orderflow_event_loop_lag_seconds`), RSS and peak RSS, the state dir's size;
2. the time of a `/clients/{id}/orders` page of the biggest client;
3. a warm restart (same state dir) and a cold recovery (state dir deleted): seconds to `/ready`,
   the longest `/health` answer meanwhile and 10 s after, RSS after.

Prints a Markdown table (paste it into bench/RESULTS.md with the machine and date). Measures, never
asserts: a small size runs in the test suite only to prove the command works.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Producer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import committed, fresh_topics  # noqa: E402
from streams.tools.localkafka import KAFKA_VERSION, LocalKafka  # noqa: E402
from tests.conftest import free_port, free_port_pair  # noqa: E402

FULL = ["created", "paid", "shipped", "delivered"]
CANCELLED = ["created", "cancelled"]
SLICES = 10
RAISED_NICE = -10


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def skewed_clients(orders: int, clients: int, seed: int) -> list[str]:
    """A client per order: 1% of the clients own half of the orders."""
    rng = random.Random(seed)
    heavy = max(1, clients // 100)
    return [f"c{rng.randrange(heavy)}" if rng.random() < 0.5 else f"c{rng.randrange(heavy, clients)}"
            for _ in range(orders)]


def lifecycle_events(orders: int, clients: int, duplicates: float, seed: int,
                     chunk: int = 5_000) -> Iterator[tuple[str, bytes]]:
    """(key, value) of every event, chunk by chunk: each step of a chunk's orders, then the next
    step, so orders interleave as in real traffic while each order's events stay in order."""
    owner = skewed_clients(orders, clients, seed)
    rng = random.Random(seed + 1)
    stamp = "2026-11-23T10:00:00Z"
    for start in range(0, orders, chunk):
        ids = range(start, min(orders, start + chunk))
        chains = {n: (CANCELLED if n % 10 == 0 else FULL) for n in ids}
        for step in range(len(FULL)):
            for n in ids:
                if step >= len(chains[n]):
                    continue
                event = {"event_id": f"e{n}-{step}", "order_id": f"o{n}", "client_id": owner[n],
                         "type": chains[n][step], "occurred_at": stamp, "schema_version": 1}
                value = json.dumps(event).encode()
                yield owner[n], value
                if duplicates and rng.random() < duplicates:
                    yield owner[n], value


def publish(bootstrap: str, topic: str, items: Iterator[tuple[str, bytes]]) -> int:
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random",
                         "linger.ms": 50, "batch.num.messages": 10_000, "compression.type": "lz4",
                         "queue.buffering.max.messages": 500_000})
    sent = 0
    for key, value in items:
        while True:
            try:
                producer.produce(topic, key=key.encode(), value=value)
                break
            except BufferError:
                producer.poll(0.1)
        sent += 1
        if sent % 200_000 == 0:
            producer.poll(0)
            say(f"  published {sent:,}")
    if producer.flush(120) != 0:
        raise SystemExit("the broker did not take every event")
    return sent


@dataclass
class Probe:
    """`/health` answers from bench/health_probe.py, a process of its own at priority `nice`
    (0: the benchmark's): the longest answer per phase, and the slow ones."""

    url: str
    nice: int = 0
    phases: list[tuple[float, str]] = field(default_factory=lambda: [(0.0, "start")])
    # phase -> (seconds into the phase, seconds the answer took) of each answer
    answers: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    error: str = ""  # why it could not run (a raised priority needs root)
    _proc: subprocess.Popen[str] | None = None
    _reader: threading.Thread | None = None

    def enter(self, phase: str) -> None:
        self.phases.append((time.monotonic(), phase))

    def _record(self, started: float, took: float) -> None:
        """An answer, counted in the phase it was asked in."""
        phase_started, phase = next((p for p in reversed(self.phases) if p[0] <= started), self.phases[0])
        self.answers.setdefault(phase, []).append((started - phase_started, took))

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            started, took = line.split()
            self._record(float(started), float(took))

    def start(self) -> Probe:
        self._proc = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "health_probe.py"), self.url, "--nice", str(self.nice)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def stop(self) -> None:
        """Stop the probe process and take its last answers (once; later calls do nothing)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
        proc.wait(10)
        if self._reader is not None:
            self._reader.join(10)
        if proc.returncode == 2 and proc.stderr is not None:
            self.error = proc.stderr.read().strip()

    def summary(self, phases: tuple[str, ...]) -> str:
        if self.error:
            return f"not measured ({self.error})"
        longest = (max((t for _, t in self.answers.get(k, [])), default=float("nan")) for k in phases)
        return " / ".join(f"{t * 1000:.0f} ms" for t in longest)

    def spread(self, phase: str) -> str:
        """p50, p99 and the share over 100 ms of the phase's answers."""
        if self.error or not self.answers.get(phase):
            return "not measured"
        took = sorted(t for _, t in self.answers[phase])
        over = sum(1 for t in took if t > 0.1)
        return (f"p50 {took[len(took) // 2] * 1000:.0f} ms, p99 {took[int(len(took) * 0.99)] * 1000:.0f} ms, "
                f"{over:,} of {len(took):,} over 100 ms")


class Worker:
    def __init__(self, env: dict[str, str], state_dir: Path, log: Path) -> None:
        self.env, self.state_dir, self.log = env, state_dir, log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "faust", "-A", "streams.app", "worker", "-l", "info",
             "--web-port", str(self.port), "--web-host", "127.0.0.1"],
            cwd=ROOT, env={**self.env, "ORDERFLOW_STATE_DIR": str(self.state_dir)},
            stdout=self.log.open("ab"), stderr=subprocess.STDOUT)
        return self

    def get(self, path: str) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(f"{self.url}{path}", timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, {}

    def ready_after(self, started: float, timeout: float = 1800) -> float:
        while time.monotonic() - started < timeout:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise SystemExit(f"the worker exited; see {self.log}")
            try:
                if self.get("/ready")[0] == 200:
                    return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"not ready after {timeout}s; see {self.log}")

    def rss_mb(self) -> tuple[float, float]:
        """(RSS, peak RSS) in MB."""
        assert self.proc is not None
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--duplicates", type=float, default=0.0, help="share of events sent twice")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, state)")
    parser.add_argument("--faust-recovery", action="store_true",
                        help="also time a cold start through Faust's own per-record recovery")
    args = parser.parse_args()
    if args.orders < 1000 or args.clients < 100:
        parser.error("at least 1000 orders and 100 clients")
    workdir = Path(tempfile.mkdtemp(prefix="orderflow-scale-"))
    broker = LocalKafka(port=free_port_pair(), data_dir=workdir / "kafka")
    broker.start()
    worker: Worker | None = None
    probes: list[Probe] = []
    try:
        settings = fresh_topics(broker)
        say(f"publishing {args.orders:,} orders of {args.clients:,} clients")
        total = publish(settings.bootstrap, settings.events_topic,
                        lifecycle_events(args.orders, args.clients, args.duplicates, args.seed))
        group = f"scale-{uuid.uuid4().hex[:6]}"
        env = {**os.environ, "KAFKA_BOOTSTRAP": settings.bootstrap, "ORDERFLOW_APP_ID": group,
               "ORDERFLOW_EVENTS_TOPIC": settings.events_topic, "ORDERFLOW_RETRY_TOPIC": settings.retry_topic,
               "ORDERFLOW_DLQ_TOPIC": settings.dlq_topic, "ORDERFLOW_PARTITIONS": str(settings.partitions),
               "ORDERFLOW_WEB_HOST": "127.0.0.1", "PYTHONPATH": str(ROOT),
               "ORDERFLOW_COMMIT_INTERVAL_S": "0.5"}
        worker = Worker(env, workdir / "state", workdir / "worker.log").start()
        # two probes side by side: at the benchmark's priority, and raised (see bench/health_probe.py)
        probes = [Probe(worker.url).start(), Probe(worker.url, nice=RAISED_NICE).start()]
        results = measure(worker, probes, settings.bootstrap, group, settings.events_topic,
                          settings.partitions, total, args)
        for probe in probes:
            probe.stop()
        print(table(results, probes, args, total))
    finally:
        for probe in probes:
            probe.stop()
        if worker is not None:
            worker.stop()
        broker.stop()
        keep_or_remove(workdir, args.keep)


def keep_or_remove(workdir: Path, keep: bool) -> None:
    """A benchmark's work dir (broker data, state dirs, logs) goes at the end unless asked to stay."""
    if keep:
        say(f"work dir kept: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


def enter(probes: list[Probe], phase: str) -> None:
    for probe in probes:
        probe.enter(phase)


def measure(worker: Worker, probes: list[Probe], bootstrap: str, group: str, topic: str, partitions: int,
            total: int, args: argparse.Namespace) -> dict[str, object]:
    r: dict[str, object] = {}
    enter(probes, "processing")
    started = time.monotonic()
    r["first_ready_s"] = worker.ready_after(started)
    samples: list[tuple[float, int]] = []  # (time, events processed as /stats says)
    while True:
        try:
            status, stats = worker.get("/stats")
        except OSError:
            status, stats = 0, {}
        if status == 200 and stats.get("complete"):
            done = stats.get("events", {}).get("processed", 0)
            samples.append((time.monotonic(), done))
        else:  # a rebalance: /stats reports only the partitions recovered (complete: false)
            done = samples[-1][1] if samples else 0
        if done >= total and committed(bootstrap, group, topic, partitions) >= total:
            break
        if len(samples) % 20 == 0:
            say(f"  processed {done:,}/{total:,} ({done / max(1e-9, time.monotonic() - started):,.0f}/s)")
        time.sleep(0.5)
    r["slices"] = slice_rates(samples, total)
    r["processing_s"] = samples[-1][0] - started
    time.sleep(3)
    r["rss_mb"], r["peak_rss_mb"] = worker.rss_mb()
    r["state_mb"] = dir_mb(worker.state_dir)
    r["loop_lag"] = loop_lag(worker.url)
    _, stats = worker.get("/stats")
    r["orders_held"] = stats.get("orders", {}).get("total")
    biggest = "c0"
    timings = []
    for _ in range(5):
        t = time.monotonic()
        worker.get(f"/clients/{biggest}/orders?limit=50")
        timings.append(time.monotonic() - t)
    r["page_ms"] = (sorted(timings)[2] * 1000, max(timings) * 1000)
    walked, cursor = 0, None
    t = time.monotonic()
    while walked < 2000:
        after = f"&after={cursor}" if cursor else ""
        _, body = worker.get(f"/clients/{biggest}/orders?limit=500{after}")
        walked += len(body.get("orders", []))
        cursor = body.get("next")
        if not cursor:
            break
    r["walk_2000_ms"] = (time.monotonic() - t) * 1000
    kinds = ["warm", "cold"] + (["cold-faust"] if args.faust_recovery else [])
    for kind in kinds:
        say(f"  {kind} restart")
        enter(probes, "stopping")  # a stopping worker's slow answers are not the next phase's
        worker.stop()
        if kind.startswith("cold"):
            shutil.rmtree(worker.state_dir)
        # "cold-faust": the same cold start through Faust's own per-record recovery, side by side
        worker.env["ORDERFLOW_BULK_RECOVERY"] = "0" if kind == "cold-faust" else "1"
        enter(probes, kind)
        started = time.monotonic()
        worker.start()
        r[f"{kind}_ready_s"] = worker.ready_after(started)
        time.sleep(10)
        r[f"{kind}_rss_mb"] = worker.rss_mb()[0]
    r["bulk_recovered"] = bulk_recovered(worker.log)
    return r


def loop_lag(url: str) -> str:
    """From the worker's `orderflow_event_loop_lag_seconds` histogram: how many of its 20 ms beats
    ran more than 25, 50 and 100 ms late, of all beats."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
        text = response.read().decode()
    buckets: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("orderflow_event_loop_lag_seconds_bucket"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[bound] = float(line.rsplit(" ", 1)[1])
    total = buckets.get("+Inf", 0.0)
    if not total:
        return "none measured"
    late = ", ".join(f"{total - buckets[b]:,.0f} over {float(b) * 1000:.0f} ms"
                     for b in ("0.025", "0.05", "0.1") if b in buckets)
    return f"{late} (of {total:,.0f} beats)"


def bulk_recovered(log: Path) -> str:
    """The worker's last "Bulk recovery done" line (records, seconds, rate), if any."""
    lines = [line for line in log.read_text(errors="replace").splitlines() if "Bulk recovery done" in line]
    return lines[-1].split("Bulk recovery done: ", 1)[-1] if lines else "none"


def slice_rates(samples: list[tuple[float, int]], total: int) -> list[float]:
    """Events/s in each tenth of the events (by count), from the samples; the first tenth starts
    at 1% (a fresh worker's first seconds create its changelog topics)."""
    rates = []
    for n in range(SLICES):
        low, high = max(total // 100, total * n // SLICES), total * (n + 1) // SLICES
        inside = [(t, d) for t, d in samples if low <= d <= high]
        before = [(t, d) for t, d in samples if d < low]
        start = before[-1] if before else (inside[0] if inside else None)
        end = next(((t, d) for t, d in samples if d >= high), None)
        if start is None or end is None or end[0] <= start[0]:
            rates.append(float("nan"))
            continue
        rates.append((end[1] - start[1]) / (end[0] - start[0]))
    return rates


def slowest(probe: Probe) -> str:
    if probe.error:
        return "not measured"
    slow = sorted(((took, phase, at) for phase, answers in probe.answers.items() for at, took in answers
                   if took > 0.1), reverse=True)[:8]
    return ("; ".join(f"{took * 1000:.0f} ms ({phase}, {at:.0f} s)" for took, phase, at in slow)
            or "none over 100 ms")


def table(r: dict[str, object], probes: list[Probe], args: argparse.Namespace, total: int) -> str:
    slices = r["slices"]
    assert isinstance(slices, list)
    same, raised = probes
    phases = ("processing", "warm", "cold")
    page = r["page_ms"]
    assert isinstance(page, tuple)
    rows = [
        ("orders / events / clients", f"{args.orders:,} / {total:,} / {args.clients:,} "
                                      f"(1% of clients own half; duplicates {args.duplicates:.0%})"),
        ("orders held at the end (/stats)", f"{r['orders_held']:,}" if r["orders_held"] else "?"),
        ("events/s, first tenth -> last tenth", f"{slices[0]:,.0f} -> {slices[-1]:,.0f} "
                                                 f"(last/first {slices[-1] / slices[0]:.2f})"),
        ("events/s per tenth", " ".join(f"{s:,.0f}" for s in slices)),
        ("processing, seconds", f"{r['processing_s']:.0f}"),
        ("longest /health answer: processing / warm / cold", same.summary(phases)),
        (f"the same, probe at raised priority (nice {RAISED_NICE})", raised.summary(phases)),
        ("/health while processing, probe at the benchmark's / raised priority",
         f"{same.spread('processing')} / {raised.spread('processing')}"),
        ("event-loop beats late, while processing", str(r["loop_lag"])),
        ("RSS after processing (peak)", f"{r['rss_mb']:.0f} MB ({r['peak_rss_mb']:.0f} MB)"),
        ("state dir", f"{r['state_mb']:.0f} MB"),
        ("ready: warm restart / cold recovery", f"{r['warm_ready_s']:.1f} s / {r['cold_ready_s']:.1f} s"),
        ("RSS after warm / cold", f"{r['warm_rss_mb']:.0f} MB / {r['cold_rss_mb']:.0f} MB"),
        ("cold recovery read in bulk", str(r["bulk_recovered"])),
        *([("cold recovery through Faust's per-record path (same data): ready / longest /health",
            f"{r['cold-faust_ready_s']:.1f} s / {same.summary(('cold-faust',))}")]
          if "cold-faust_ready_s" in r else []),
        ("biggest client's page of 50: median / max", f"{page[0]:.0f} ms / {page[1]:.0f} ms"),
        ("walking 2,000 of its orders (pages of 500)", f"{r['walk_2000_ms']:.0f} ms"),
        ("slowest /health answers (phase, seconds into it)", slowest(same)),
        ("the same, probe at raised priority", slowest(raised)),
    ]
    head = (f"bench/scale.py --orders {args.orders} --clients {args.clients} --duplicates {args.duplicates}; "
            f"{platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"Kafka {KAFKA_VERSION}, {time.strftime('%Y-%m-%d')}")
    return "\n".join([head, "", "| measure | value |", "|---|---|",
                      *(f"| {k} | {v} |" for k, v in rows)])


if __name__ == "__main__":
    main()
