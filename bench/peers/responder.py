"""A bare HTTP service that answers every POST `200 {}` a fixed latency after its first byte came:
the effect-bound workload's service without the gateway's own cost.

    python bench/peers/responder.py PORT LATENCY_MS

`orderflow gateway` is what the issue's effect-bound target names, and what users run in the demo:
aiohttp's server, idempotency, faults and per-key stats cost it about 100 µs of CPU per call on
this machine. Its answers to a burst of requests (64 lanes send them in bursts) are due together
and written one after another on its one thread: alone it answers 20 ms in 21.1-21.4 (it decides
each call as it arrives, so little more than the writing is left when the answer is due; 21.6-22.4
before), and the lanes' bound it serves is 93-95%, not 100%; under a run's load it is slower still,
and it takes a quarter to a third of a core from the worker. This responder parses with httptools
and writes one prepared answer from a timer, 20-30 µs per call, so that beside the gateway the
peers run can tell the worker's share of the missing effects/s from the gateway's
(bench/RESULTS.md, 2026-12-05). Written by hand because what it does is a few lines: no framework
is leaner.
"""

from __future__ import annotations

import asyncio
import sys

import httptools
import uvloop

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class Delayed(asyncio.Protocol):
    """One keep-alive connection: each request answered `latency_s` after its first byte."""

    def __init__(self, latency_s: float) -> None:
        self.latency_s = latency_s
        self.arrived: float | None = None
        self.parser = httptools.HttpRequestParser(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        if self.arrived is None:
            self.arrived = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_complete(self) -> None:
        arrived, self.arrived = self.arrived, None
        assert arrived is not None
        self.loop.call_at(arrived + self.latency_s, self._answer)

    def _answer(self) -> None:
        if not self.transport.is_closing():
            self.transport.write(ANSWER)


async def serve(port: int, latency_s: float) -> None:
    server = await asyncio.get_running_loop().create_server(lambda: Delayed(latency_s), "127.0.0.1", port)
    print(f"responder on 127.0.0.1:{port}, answering after {latency_s * 1000:g} ms", flush=True)
    await server.serve_forever()


def main() -> None:
    try:
        port, latency_ms = int(sys.argv[1]), float(sys.argv[2])
    except (IndexError, ValueError):
        raise SystemExit("usage: responder.py PORT LATENCY_MS") from None
    uvloop.run(serve(port, latency_ms / 1000))


if __name__ == "__main__":
    main()
