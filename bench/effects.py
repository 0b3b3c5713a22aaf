"""Concurrency across orders: the processor with its default lanes vs one lane, effects at 20 ms.

    python bench/effects.py [--orders 10000] [--latency-ms 20] [--kinds created,paid,shipped,delivered]

One lane is strictly sequential, what a plain Faust agent does: every effect call waits for the one
before. Starts its own broker and `orderflow gateway`, publishes once, runs each variant as a real
`faust worker` with its own consumer group, and appends events/s of both and the ratio to
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import fresh_topics, run_variant  # noqa: E402
from streams.config import Settings  # noqa: E402
from streams.tools.localkafka import KAFKA_VERSION, LocalKafka  # noqa: E402
from streams.tools.publisher import Publisher  # noqa: E402
from tests.conftest import free_port, free_port_pair  # noqa: E402
from tests.helpers import make_event  # noqa: E402


def start_gateway(port: int, latency_ms: float, log: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "streams.tools.cli", "gateway", "--port", str(port),
                             "--latency-ms", str(latency_ms)], cwd=ROOT,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"gateway did not start; see {log}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--kinds", default="created,paid,shipped,delivered")
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    workdir = Path(tempfile.mkdtemp(prefix="orderflow-bench-effects-"))
    broker = LocalKafka(port=free_port_pair(), data_dir=workdir / "kafka")
    broker.start()
    port = free_port()
    gateway = start_gateway(port, args.latency_ms, workdir / "gateway.log")
    try:
        settings = fresh_topics(broker)
        batch = [make_event(f"o{n}", k, client_id=f"c{n % 1000}") for n in range(args.orders) for k in kinds]
        print(f"publishing {len(batch)} events over {args.orders} orders", file=sys.stderr)
        assert Publisher(settings).publish(batch).ok
        url = f"http://127.0.0.1:{port}"
        default_lanes = str(Settings().lanes)
        results = [run_variant(f"processor, {lanes} lane{'s' if lanes != '1' else ''}", "streams.app",
                               settings, len(batch), workdir, ORDERFLOW_EFFECTS_URL=url,
                               ORDERFLOW_LANES=lanes)
                   for lanes in (default_lanes, "1")]
        with urllib.request.urlopen(f"{url}/_stats", timeout=10) as answer:
            stats = json.loads(answer.read())
    finally:
        gateway.terminate()
        gateway.wait(10)
        broker.stop()
    write(results, args, len(batch), stats)


def write(results: list[dict], args: argparse.Namespace, total: int, stats: dict) -> None:
    import faust

    many, one = results
    lines = [
        f"\n## Effects: concurrency across orders — {time.strftime('%Y-%m-%d %H:%M')}",
        "",
        f"{total} events over {args.orders} orders ({args.kinds}); one `paid` effect per order "
        f"through `orderflow gateway` at {args.latency_ms:g} ms latency, no failures; 8 partitions, "
        f"one worker, Apache Kafka {KAFKA_VERSION} (local KRaft); {os.cpu_count()} cores; Python "
        f"{platform.python_version()}; faust-streaming {faust.__version__}.",
        "",
        "| variant | events | seconds | events/s | CPU µs/event |",
        "|---|---|---|---|---|",
        *[f"| {r['name']} | {r['events']} | {r['seconds']:.1f} | {r['rate']:.0f} | {r['cpu_us']:.0f} |"
          for r in results],
        "",
        f"Ratio: default lanes / one lane = {many['rate'] / one['rate']:.1f}x. Gateway: "
        f"{stats['calls_total']} calls, {stats['applied_total']} effects applied (each variant applies "
        "every effect once; the second run's calls are answered from the gateway's idempotency keys).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    with (ROOT / "bench" / "RESULTS.md").open("a") as out:
        out.write(text)


if __name__ == "__main__":
    main()
