"""`orderflow gateway`: a downstream HTTP service (shipments, refunds) that fails on purpose.

It behaves like a real payment API where it matters to orderflow: a request needs an
`Idempotency-Key`, and a repeated key returns the first successful answer without applying the
effect again. Around that it injects the failures the processor must survive: latency, 5xx
(before applying), timeouts (after applying: the caller never hears the answer, retries, and must
not cause a second application), 429 with `Retry-After`, and faults scripted per order for tests.
`GET /_stats` reports per-key call and application counts, so a test can prove "applied once".

Its latency counts from a request's arrival, as a service's own latency is measured: the server
stamps when each request's first bytes come in (`_Stamped`), and the handler waits out the rest.
Counted from the handler's start instead, a burst of 64 concurrent requests (what 64 lanes send)
waited for the handlers before it on the server's one thread as well, and "20 ms" answered in 24
on average: with a client doing nothing else, 64 callers got 83% of 64 / 20 ms
(bench/RESULTS.md, 2026-12-05). It runs on uvloop, as the worker does, for the same reason.

A call is decided as it arrives (applied or refused, its answer's body encoded) and answered when
its latency is up, so that when a burst's answers fall due together little more than their writing
is left, one after another: decided after the wait instead, the answers of a burst of 64 went out
over several milliseconds more, and 64 callers doing nothing else got 89-92% of 64 / 20 ms instead
of 93-94% (bench/RESULTS.md, 2026-12-05 13:40). To a caller the two are the same service: no byte of
an answer sooner than the latency, one effect per key, a repeated key answered from the first.
(Preparing the response's head before the wait as well gave another point, but whether aiohttp
then holds the head back until the body depends on its version: not done.)
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
import signal
import time
from collections import Counter
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import uvloop
from aiohttp import web
from aiohttp.typedefs import Handler

log = logging.getLogger(__name__)

#: when a request's first bytes arrived (the loop's clock), or None when it is not known
ARRIVED: web.RequestKey[float | None] = web.RequestKey("arrived")

EFFECTS = ("shipments", "refunds")


@dataclass(frozen=True)
class Faults:
    """What the gateway does wrong, and how often (rates are probabilities per call)."""

    latency_s: float = 0.0  # added to every answer
    error_rate: float = 0.0  # 503 before applying
    timeout_rate: float = 0.0  # apply, then hang for `hang_s` (the caller times out)
    throttle_rate: float = 0.0  # 429 with Retry-After, before applying
    retry_after_s: float = 1.0
    hang_s: float = 30.0

    def check(self) -> Faults:
        for name in ("error_rate", "timeout_rate", "throttle_rate"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, not {rate}")
        for name in ("latency_s", "retry_after_s", "hang_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        return self

    def updated(self, changes: dict[str, Any]) -> Faults:
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        return replace(self, **{k: float(v) for k, v in changes.items()}).check()


@dataclass
class Scripted:
    """The next `times` calls for one order answer `status` (e.g. 503, 429, 400), unapplied."""

    status: int
    times: int
    retry_after_s: float | None = None


class Gateway:
    """The service's state: applied effects by key, per-key call log, faults."""

    def __init__(self, faults: Faults, seed: int | None = None) -> None:
        self.faults = faults.check()
        #: per connection (its transport), when its request's first bytes arrived (`_Stamped`)
        self.arrivals: dict[object, float] = {}
        self.rng = random.Random(seed)
        self.answers: dict[str, dict[str, Any]] = {}  # Idempotency-Key -> first successful answer
        self.calls: Counter[str] = Counter()
        self.call_times: dict[str, list[float]] = {}
        self.applied: Counter[str] = Counter()  # per key: how often the effect was applied (<= 1)
        self.statuses: Counter[int] = Counter()
        self.scripted: dict[str, Scripted] = {}
        self._ids = itertools.count(1)

    def routes(self) -> web.Application:
        app = web.Application(middlewares=[self._arrival])
        app.add_routes([
            web.post("/shipments", self.effect), web.post("/refunds", self.effect),
            web.get("/_stats", self.stats), web.post("/_faults", self.set_faults),
            web.post("/_script", self.script), web.get("/health", self.health),
        ])
        return app

    @web.middleware
    async def _arrival(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Takes every request's arrival stamp off its connection, whatever its route, so the
        connection's next request is stamped anew."""
        request[ARRIVED] = self.arrivals.pop(request.transport, None)
        return await handler(request)

    async def effect(self, request: web.Request) -> web.Response:
        """Decided as it arrives (applied or refused, its answer's body made), answered when its
        latency is up: then little more than the answer's writing is left (the module's docstring)."""
        key = request.headers.get("Idempotency-Key", "")
        if not key:
            return self._answer(400, {"error": "the Idempotency-Key header is required"})
        self.calls[key] += 1
        self.call_times.setdefault(key, []).append(time.time())
        try:
            body = json.loads(await request.read())
        except ValueError:
            return self._answer(400, {"error": "the body is not JSON"})
        faults = self.faults
        answer, hangs = self._decide(key, request.path.strip("/"), body, faults)
        if faults.latency_s:
            arrived = request.get(ARRIVED)
            waited = 0.0 if arrived is None else asyncio.get_running_loop().time() - arrived
            await asyncio.sleep(max(0.0, faults.latency_s - waited))
        if hangs:
            await asyncio.sleep(faults.hang_s)  # applied, but the caller gives up first
        return answer

    def _decide(self, key: str, effect: str, body: Any, faults: Faults) -> tuple[web.Response, bool]:
        """The answer to one call, applying its effect if it succeeds, and whether to hang."""
        if key in self.answers:  # a repeated key: the first answer again, nothing applied
            return self._answer(200, self.answers[key], replayed=True), False
        problem = _invalid(body)
        if problem:
            return self._answer(400, {"error": problem}), False
        scripted = self.scripted.get(str(body.get("order_id")))
        if scripted is not None and scripted.times > 0:
            scripted.times -= 1
            return self._answer(scripted.status, {"error": "scripted fault"},
                                retry_after=scripted.retry_after_s), False
        roll = self.rng.random()
        if roll < faults.error_rate:
            return self._answer(503, {"error": "injected failure"}), False
        if roll < faults.error_rate + faults.throttle_rate:
            return self._answer(429, {"error": "slow down"}, retry_after=faults.retry_after_s), False
        answer = {"id": f"{effect[:3]}_{next(self._ids)}", "effect": effect,
                  "order_id": body["order_id"], "event_id": body.get("event_id"), "status": "done"}
        self.answers[key] = answer
        self.applied[key] += 1
        hangs = roll < faults.error_rate + faults.throttle_rate + faults.timeout_rate
        return self._answer(200, answer), hangs

    def _answer(self, status: int, body: dict[str, Any], replayed: bool = False,
                retry_after: float | None = None) -> web.Response:
        self.statuses[status] += 1
        headers = {"Idempotent-Replayed": "true"} if replayed else {}
        if retry_after is not None:
            headers["Retry-After"] = f"{retry_after:g}"
        return web.json_response(body, status=status, headers=headers)

    async def stats(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = {
            "calls": dict(self.calls), "applied": dict(self.applied),
            "calls_total": sum(self.calls.values()), "applied_total": sum(self.applied.values()),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "faults": asdict(self.faults),
        }
        if request.query.get("times"):
            body["call_times"] = self.call_times
        return web.json_response(body)

    async def set_faults(self, request: web.Request) -> web.Response:
        """Change fault settings while running (e.g. heal the gateway: error_rate 0)."""
        try:
            self.faults = self.faults.updated(await request.json())
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        log.info("gateway faults now %s", asdict(self.faults))
        return web.json_response(asdict(self.faults))

    async def script(self, request: web.Request) -> web.Response:
        """`{"order_id", "status", "times", "retry_after_s"?}`: fail that order's next calls."""
        try:
            spec = await request.json()
            self.scripted[str(spec["order_id"])] = Scripted(
                int(spec["status"]), int(spec["times"]),
                None if spec.get("retry_after_s") is None else float(spec["retry_after_s"]))
        except (ValueError, TypeError, KeyError) as exc:
            return web.json_response({"error": f"bad script: {exc}"}, status=400)
        return web.json_response({"ok": True})

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})


def _invalid(body: Any) -> str:
    """Why a request body is refused (a 400, like a real API's validation), or ''."""
    if not isinstance(body, dict) or not isinstance(body.get("order_id"), str):
        return "order_id is required"
    amount = (body.get("payload") or {}).get("amount")
    if amount is not None and (not isinstance(amount, int | float) or amount < 0):
        return f"invalid amount {amount!r}"
    return ""


class _Stamped(asyncio.Protocol):
    """aiohttp's protocol for one connection, with the time each request's first bytes arrive
    noted for the handler (`Gateway.arrivals`, by transport; the handler takes it). Everything
    else is aiohttp's own."""

    def __init__(self, inner: asyncio.Protocol, arrivals: dict[object, float]) -> None:
        self._inner = inner
        self._arrivals = arrivals
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._arrivals.setdefault(self._transport, asyncio.get_running_loop().time())
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._arrivals.pop(self._transport, None)
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


def serve(host: str, port: int, faults: Faults, seed: int | None = None) -> None:
    """Run on uvloop until SIGINT/SIGTERM; one log line at start and at stop."""

    async def until_signalled() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signal_number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signal_number, stop.set)
        await run(Gateway(faults, seed), host, port, stop)

    uvloop.run(until_signalled())


async def run(gateway: Gateway, host: str, port: int, stop: asyncio.Event) -> None:
    """Serve `gateway` on host:port until `stop` is set, each request stamped as it arrives."""
    runner = web.AppRunner(gateway.routes(), access_log=None)
    await runner.setup()
    server = runner.server
    assert server is not None  # set up
    loop = asyncio.get_running_loop()
    listening = await loop.create_server(lambda: _Stamped(server(), gateway.arrivals), host, port)
    print(f"gateway listening on http://{host}:{port} with faults {asdict(gateway.faults)}", flush=True)
    try:
        await stop.wait()
    finally:
        listening.close()
        await runner.cleanup()
        print(f"gateway stopped after {sum(gateway.calls.values())} calls, "
              f"{sum(gateway.applied.values())} effects applied", flush=True)
