"""GET `/health` every 50 ms and print one line per answer: `<monotonic start> <seconds>`.

    python bench/health_probe.py http://127.0.0.1:6066 [--nice -10]

A process of its own, for bench/scale.py: a probe thread inside the benchmark shares its GIL, and
on a machine whose cores the worker and the broker keep busy, the probe's own wake-ups add to what
it measures. `--nice` runs it at another priority (a negative one needs root), the way a node's
health checker runs on CPU reserved for it. A refused connection (the worker not listening yet, or
stopping) is not an answer and prints nothing. It ends with its parent.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.error
import urllib.request

INTERVAL_S = 0.05


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--nice", type=int, default=0, help="priority change (negative: higher)")
    args = parser.parse_args()
    if args.nice:
        try:
            os.nice(args.nice)
        except PermissionError:
            parser.exit(2, f"health_probe: cannot change priority by {args.nice} (needs root)\n")
    parent = os.getppid()
    while os.getppid() == parent:  # the benchmark gone (killed, say): stop too
        started = time.monotonic()
        try:
            with urllib.request.urlopen(f"{args.url}/health", timeout=30) as response:
                response.read()
        except (OSError, urllib.error.URLError):
            time.sleep(INTERVAL_S)
            continue
        took = time.monotonic() - started
        print(f"{started:.6f} {took:.6f}", flush=True)
        time.sleep(max(0.0, INTERVAL_S - took))


if __name__ == "__main__":
    try:
        main()
    except (KeyboardInterrupt, BrokenPipeError):
        sys.exit(0)
