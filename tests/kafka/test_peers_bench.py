"""`bench/peers/run.py` at a small size: the command works end to end (its own broker, the Quix
Streams virtualenv, the Kafka Streams peer built with Maven and javac, every peer on both
workloads, the gateway alone, two alternating rounds, the tables and the plot). It measures;
nothing here asserts a speed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.workers import ROOT


def test_the_peers_benchmark_runs_every_peer_at_a_small_size(tmp_path: Path) -> None:
    results, plot = tmp_path / "RESULTS.md", tmp_path / "peers.png"
    # Big enough that each peer takes several commit intervals (0.5 s): Quix Streams at 27k events/s
    # did 10,000 events, and orderflow with effects 1,500, within one, so the first commit already
    # covered them all and nothing could be timed; 1,000 effect orders (1,000 effects, under a second
    # at 64 lanes) were once done, on a CI machine, before the first commit was seen
    done = subprocess.run([sys.executable, "bench/peers/run.py", "--orders", "8000",
                           "--effect-orders", "4000", "--quix-effect-events", "2000", "--before", "HEAD",
                           "--rounds", "2", "--results", str(results), "--plot", str(plot)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = results.read_text().splitlines()
    rows = {line.split("|")[1].strip(): line.split("|")[4].strip() for line in lines
            if line.startswith("| ") and not line.startswith("| system")}
    for peer in ("confluent-kafka consume + json.loads (the Python ceiling)", "bare Faust agent, decode only",
                 "orderflow worker", "Quix Streams, the same per-order work",
                 "Kafka Streams, the same per-order work", "orderflow worker, 64 lanes",
                 "Quix Streams (synchronous calls)", "Kafka Streams (synchronous calls)",
                 f"orderflow worker of {head()}"):
        assert float(rows[peer].replace(",", "")) > 0, (peer, rows)
    assert f"This orderflow against the orderflow worker of {head()}:" in results.read_text()
    alone = re.search(r"The gateway alone \(.*?\), measured before the rounds: ([\d,]+) effects/s",
                      results.read_text())
    assert alone and int(alone[1].replace(",", "")) > 0, "the effect ceiling is measured"
    bare = re.search(r"Against a bare responder .*?: alone ([\d,]+) effects/s .*? round by round: "
                     r"([\d,]+) \(\d+%\), ([\d,]+) \(\d+%\) effects/s", results.read_text())
    assert bare and all(int(n.replace(",", "")) > 0 for n in bare.groups()), "the responder's rounds ran"
    assert "; Kafka Streams 4.1.1 on " in results.read_text()  # versions: the Java peer's and its JVM
    rounds = [line for line in lines if line.startswith(("| 1 |", "| 2 |"))]
    assert len(rounds) == 2 and all(line.count("x |") == 1 for line in rounds), rounds
    assert plot.read_bytes().startswith(b"\x89PNG")
    print("\n" + results.read_text())


def head() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout.strip()
