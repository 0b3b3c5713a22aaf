"""`bench/latency.py` at a small size: the command works end to end (its own broker, two workers,
paced traffic, the change feed read back) and reports every measure. It measures; nothing here
asserts a speed."""

from __future__ import annotations

import subprocess
import sys

from tests.workers import ROOT


def test_the_latency_benchmark_runs_at_a_small_size_and_reports_every_measure() -> None:
    done = subprocess.run([sys.executable, "bench/latency.py", "--rate", "200", "--seconds", "4",
                           "--warmup", "2", "--worker-env", "ORDERFLOW_LANES=16"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("| ") and "| measure" not in line]
    rows = {k.strip(): v.strip() for k, v in (line.strip("|").split("|")[:2] for line in lines)}
    measured = rows["events measured (after the warm-up)"]
    assert measured.endswith("(0 not seen on the feed)") and int(measured.split()[0].replace(",", "")) >= 700
    for measure in ("applied, ms: p50 / p90 / p99 / p99.9 / max",
                    "visible on the change feed, ms: p50 / p90 / p99 / p99.9 / max",
                    "acknowledged to the publisher, ms: p50 / p90 / p99 / p99.9 / max"):
        assert len(rows[measure].split(" / ")) == 5, (measure, rows[measure])
    slow_partitions = rows["applied over 100 ms, by partition"]
    assert slow_partitions == "none" or all(p.split(": ")[0].isdigit() for p in slow_partitions.split(", "))
    assert "ORDERFLOW_LANES=16" in done.stdout and "over 100 ms" in rows["event-loop beats late"]
    print("\n" + done.stdout)
