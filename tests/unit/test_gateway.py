"""The test gateway's promises: idempotent keys, injected and scripted faults, live changes."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from streams.tools.gateway import Faults, Gateway, run
from tests.conftest import free_port


@pytest.fixture
async def client_for() -> AsyncIterator:
    clients: list[TestClient] = []

    async def make(faults: Faults, seed: int = 1) -> tuple[TestClient, Gateway]:
        gateway = Gateway(faults, seed)
        client = TestClient(TestServer(gateway.routes()))
        await client.start_server()
        clients.append(client)
        return client, gateway

    yield make
    for client in clients:
        await client.close()


def body(order_id: str = "o1", **payload: object) -> dict:
    return {"order_id": order_id, "event_id": "e1", "payload": payload}


async def test_a_repeated_key_returns_the_first_answer_and_applies_once(client_for) -> None:
    client, _ = await client_for(Faults())
    first = await client.post("/shipments", json=body(), headers={"Idempotency-Key": "k1"})
    again = await client.post("/shipments", json=body(), headers={"Idempotency-Key": "k1"})
    assert first.status == again.status == 200
    assert await first.json() == await again.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    stats = await (await client.get("/_stats")).json()
    assert stats["calls"] == {"k1": 2} and stats["applied"] == {"k1": 1}


async def test_a_key_repeated_while_its_first_call_is_answered_applies_once(client_for) -> None:
    """A caller that retries before its first answer came (both calls wait out the latency): one
    effect applied, the same answer twice, every answer after the latency."""
    client, gateway = await client_for(Faults(latency_s=0.3))
    started = time.monotonic()

    async def call() -> tuple[int, dict, bool, float]:
        answer = await client.post("/shipments", json=body(), headers={"Idempotency-Key": "k"})
        return (answer.status, await answer.json(), "Idempotent-Replayed" in answer.headers,
                time.monotonic() - started)

    first, second = await asyncio.gather(call(), call())
    assert first[0] == second[0] == 200 and first[1] == second[1]
    assert sorted([first[2], second[2]]) == [False, True]  # one applied, one replayed
    assert min(first[3], second[3]) >= 0.3
    assert gateway.applied == {"k": 1} and gateway.calls == {"k": 2}


async def test_requests_without_a_key_or_with_a_bad_amount_are_refused_unapplied(client_for) -> None:
    client, gateway = await client_for(Faults())
    assert (await client.post("/refunds", json=body())).status == 400
    bad = await client.post("/refunds", json=body(amount=-1), headers={"Idempotency-Key": "k"})
    assert bad.status == 400 and "invalid amount" in (await bad.json())["error"]
    assert not gateway.applied


async def test_injected_errors_are_not_applied_and_a_later_call_applies(client_for) -> None:
    client, gateway = await client_for(Faults(error_rate=1.0))
    refused = await client.post("/shipments", json=body(), headers={"Idempotency-Key": "k"})
    assert refused.status == 503 and not gateway.applied
    healed = await client.post("/_faults", json={"error_rate": 0})
    assert healed.status == 200 and (await healed.json())["error_rate"] == 0
    ok = await client.post("/shipments", json=body(), headers={"Idempotency-Key": "k"})
    assert ok.status == 200 and gateway.applied == {"k": 1}


async def test_throttling_sends_retry_after(client_for) -> None:
    client, _ = await client_for(Faults(throttle_rate=1.0, retry_after_s=2.5))
    answer = await client.post("/shipments", json=body(), headers={"Idempotency-Key": "k"})
    assert answer.status == 429 and answer.headers["Retry-After"] == "2.5"


async def test_scripted_faults_hit_one_order_a_given_number_of_times(client_for) -> None:
    client, gateway = await client_for(Faults())
    await client.post("/_script", json={"order_id": "o1", "status": 503, "times": 2})
    statuses = [(await client.post("/shipments", json=body("o1"), headers={"Idempotency-Key": "k"})).status
                for _ in range(3)]
    other = await client.post("/shipments", json=body("o2"), headers={"Idempotency-Key": "k2"})
    assert statuses == [503, 503, 200] and other.status == 200
    assert gateway.applied == {"k": 1, "k2": 1}


async def test_bad_fault_settings_are_refused(client_for) -> None:
    client, _ = await client_for(Faults())
    assert (await client.post("/_faults", json={"error_rate": 3})).status == 400
    assert (await client.post("/_faults", json={"colour": 1})).status == 400
    with pytest.raises(ValueError, match="between 0 and 1"):
        Faults(timeout_rate=-0.1).check()


async def test_latency_counts_from_the_requests_arrival_not_from_its_handler(capsys) -> None:
    """A request whose last bytes come 0.8 s after its first is answered 1 s after the first
    (the service's latency), not 1 s after the handler got it; its connection leaves no stamp."""
    gateway = Gateway(Faults(latency_s=1.0))
    stop = asyncio.Event()
    port = free_port()
    serving = asyncio.create_task(run(gateway, "127.0.0.1", port, stop))
    for _ in range(100):
        if "listening" in capsys.readouterr().out:
            break
        await asyncio.sleep(0.02)
    payload = json.dumps(body()).encode()
    request = (b"POST /shipments HTTP/1.1\r\nHost: gateway\r\nIdempotency-Key: k\r\n"
               b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(payload)) + payload
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    first_bytes = time.monotonic()
    writer.write(request[:20])
    await asyncio.sleep(0.8)
    writer.write(request[20:])
    head, answered = await answer_of(reader)
    assert head.startswith(b"HTTP/1.1 200")
    assert answered - first_bytes >= 0.99  # the latency, from the first bytes (to the answer's first)
    assert answered - first_bytes < 1.5  # not another second after the request was complete
    # the same connection: a request of another route, then one sent whole 0.8 s later, which
    # waits its own second (no stamp left over from the request before it)
    writer.write(b"GET /health HTTP/1.1\r\nHost: gateway\r\n\r\n")
    assert (await answer_of(reader))[0].startswith(b"HTTP/1.1 200")
    await asyncio.sleep(0.8)
    sent = time.monotonic()
    writer.write(request.replace(b"Idempotency-Key: k", b"Idempotency-Key: k2"))
    head, answered = await answer_of(reader)
    assert head.startswith(b"HTTP/1.1 200") and answered - sent >= 0.99
    writer.close()
    await writer.wait_closed()
    stop.set()
    await serving
    assert gateway.applied == {"k": 1, "k2": 1} and not gateway.arrivals
    assert "gateway stopped after 2 calls, 2 effects applied" in capsys.readouterr().out


async def answer_of(reader: asyncio.StreamReader) -> tuple[bytes, float]:
    """One HTTP answer read whole off the connection (its body by Content-Length): its head, and
    when its first byte came (`time.monotonic()`, as the test's other stamps)."""
    first = await reader.readexactly(1)
    came = time.monotonic()
    head = first + await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    await reader.readexactly(length)
    return head, came
