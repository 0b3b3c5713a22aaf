"""The event loop thread's CPU per effect call, compiled and pure side by side.

    python bench/call_cpu.py [--calls 32000] [--callers 64] [--latency-ms 20] [--rounds 3]

64 callers (the default lanes) each call `streams.effects.Effects.call` in a loop against the bare
responder (bench/peers/responder.py, on this machine), after a warm-up; the thread CPU the caller's
event loop spent is divided by the calls. Each round runs the compiled build, then the same
sources as pure Python (`ORDERFLOW_PURE=1`), in fresh processes, one after the other: this
machine's speed swings by a third within the hour, so only ratios taken close together count.
With no compiled build (no C compiler at install), both columns are pure Python.

What it measures is the client's part of an effect call on the loop thread (building the request,
the write, the read, the parse, the future, the coroutines), not the worker's: in the worker an
effect call also suspends and resumes its order's job in a lane (bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


async def measure(url: str, calls: int, callers: int) -> tuple[float, float]:
    """(µs of this thread's CPU per call, calls per second) over `calls` calls by `callers`."""
    from schemas.envelope import Envelope
    from streams.effects import Effects, Outcome

    effects = Effects(url, 10.0, callers)
    event: Envelope = {"event_id": "", "order_id": "o-1", "client_id": "c-1", "type": "shipped",
                       "occurred_at": "2026-12-06T00:00:00Z", "schema_version": 1, "payload": {"amount": 3}}

    async def caller(name: int, n: int) -> None:
        for i in range(n):
            result = await effects.call("shipments", {**event, "event_id": f"e-{name}-{i}"})
            if result.outcome is not Outcome.OK:
                raise SystemExit(f"the responder answered {result.message}")

    await asyncio.gather(*(caller(c, 100) for c in range(callers)))  # connections open, code warm
    per_caller = max(1, calls // callers)
    cpu, wall = time.thread_time(), time.perf_counter()
    await asyncio.gather(*(caller(c, per_caller) for c in range(callers)))
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    await effects.close()
    done = per_caller * callers
    return cpu / done * 1e6, done / wall


def one(url: str, calls: int, callers: int) -> None:
    """Run in a child: print `status µs calls/s`."""
    import uvloop

    from streams import compiled

    micros, rate = uvloop.run(measure(url, calls, callers))
    print(f"{compiled.status}\t{micros:.1f}\t{rate:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=32_000)
    parser.add_argument("--callers", type=int, default=64)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.calls < 1 or args.callers < 1 or args.rounds < 1 or args.latency_ms < 0:
        parser.error("--calls, --callers and --rounds must be at least 1, --latency-ms not negative")
    if args.child:
        one(args.child, args.calls, args.callers)
        return
    from bench.peers.run import start_responder
    from tests.conftest import free_port

    port = free_port()
    responder = start_responder(port, args.latency_ms)
    url = f"http://127.0.0.1:{port}"
    print(f"{args.callers} callers, {args.calls:,} calls a run, responder at {args.latency_ms:g} ms",
          flush=True)
    try:
        for round_number in range(1, args.rounds + 1):
            figures = []
            for pure in ("", "1"):
                child = subprocess.run(
                    [sys.executable, __file__, "--child", url, "--calls", str(args.calls),
                     "--callers", str(args.callers)],
                    env={**os.environ, "ORDERFLOW_PURE": pure}, capture_output=True, text=True, cwd=ROOT)
                if child.returncode != 0:
                    last = (child.stderr.strip().splitlines() or ["no output"])[-1]
                    raise SystemExit(f"a measuring run failed (exit {child.returncode}): {last}")
                figures.append(child.stdout.strip().split("\t"))
            (status_a, micros_a, rate_a), (status_b, micros_b, rate_b) = figures
            print(f"round {round_number}: {status_a}: {micros_a} µs a call ({rate_a}/s); "
                  f"{status_b}: {micros_b} µs a call ({rate_b}/s); "
                  f"ratio {float(micros_a) / float(micros_b):.2f}", flush=True)
    finally:
        responder.terminate()
        responder.wait(10)


if __name__ == "__main__":
    main()
