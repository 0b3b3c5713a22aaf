"""The effect-bound ceiling of this machine and gateway: `callers` concurrent callers, each calling
the gateway again as soon as its answer is read, through orderflow's own HTTP client, no Kafka and
no other work. It is what the lanes could get if a worker cost nothing; the peers table puts
orderflow's effect-bound rate beside it (bench/peers/run.py)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import NamedTuple

import uvloop

from streams.httpclient import HttpClient


class Ceiling(NamedTuple):
    callers: int
    calls_per_s: float
    mean_ms: float
    p99_ms: float


async def _measure(url: str, callers: int, seconds: float) -> Ceiling:
    client = HttpClient(url, 10.0, callers)
    path = client.path_of("shipments")
    run = uuid.uuid4().hex[:8]  # fresh keys: the gateway answers a key it has seen from memory
    latencies: list[float] = []

    async def caller(number: int, until: float, record: bool) -> None:
        call = 0
        while time.perf_counter() < until:
            call += 1
            key = f"{run}-{number}-{call}-{int(record)}"
            body = json.dumps({"order_id": f"ceiling-{key}", "event_id": key}).encode()
            started = time.perf_counter()
            answer = await client.post(path, body, f"Idempotency-Key: {key}\r\n".encode())
            if answer.status != 200:
                raise SystemExit(f"effect ceiling: the gateway answered {answer.status}")
            if record:
                latencies.append(time.perf_counter() - started)

    warm_up = time.perf_counter() + 1.0
    await asyncio.gather(*(caller(n, warm_up, False) for n in range(callers)))
    started = time.perf_counter()
    await asyncio.gather(*(caller(n, started + seconds, True) for n in range(callers)))
    elapsed = time.perf_counter() - started
    await client.close()
    latencies.sort()
    return Ceiling(callers, len(latencies) / elapsed, sum(latencies) / len(latencies) * 1000,
                   latencies[int(len(latencies) * 0.99)] * 1000)


def measure(url: str, callers: int, seconds: float = 5.0) -> Ceiling:
    return uvloop.run(_measure(url, callers, seconds))
