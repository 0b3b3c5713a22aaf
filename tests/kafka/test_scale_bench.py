"""`bench/scale.py` at a small size: the command works end to end (its own broker, a worker,
processing, a page, a warm restart, a cold recovery) and reports every measure. It measures;
nothing here asserts a speed."""

from __future__ import annotations

import subprocess
import sys

from tests.workers import ROOT


def test_the_scale_benchmark_runs_at_a_small_size_and_reports_every_measure() -> None:
    done = subprocess.run([sys.executable, "bench/scale.py", "--orders", "2000", "--clients", "100"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = dict(line.strip("|").split("|")[:2] for line in done.stdout.splitlines()
                if line.startswith("| ") and not line.startswith("| measure"))
    rows = {k.strip(): v.strip() for k, v in rows.items()}
    assert rows["orders held at the end (/stats)"] == "2,000"
    assert rows["events/s, first tenth -> last tenth"]  # too few events to slice them well
    for measure in ("longest /health answer: processing / warm / cold",
                    "the same, probe at raised priority (nice -10)",
                    "RSS after processing (peak)", "state dir", "ready: warm restart / cold recovery",
                    "biggest client's page of 50: median / max"):
        assert rows[measure] and "nan" not in rows[measure], (measure, rows[measure])
    print("\n" + done.stdout)
