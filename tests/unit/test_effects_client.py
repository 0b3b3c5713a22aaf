"""The effects client (streams/effects.py) against a real HTTP server in-process: what it sends and
how it classifies each kind of answer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from streams.effects import Effects, Outcome
from tests.conftest import free_port
from tests.helpers import make_event


async def _serve(statuses: dict[str, tuple[int, dict[str, str]]], seen: list[dict[str, Any]]) -> tuple[
        web.AppRunner, str]:
    async def handle(request: web.Request) -> web.Response:
        effect = request.match_info["effect"]
        seen.append({"effect": effect, "key": request.headers.get("Idempotency-Key"),
                     "type": request.headers.get("Content-Type"), "body": json.loads(await request.read())})
        status, headers = statuses[effect]
        return web.Response(status=status, text=f"answer of {effect}", headers=headers)

    return await _serve_handler(handle)


async def _serve_handler(handle: Callable[[web.Request], Awaitable[web.Response]]) -> tuple[
        web.AppRunner, str]:
    """A local service answering every `POST /{effect}` with `handle`: its runner and base URL."""
    app = web.Application()
    app.router.add_post("/{effect}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/"


def test_calls_carry_the_event_and_its_idempotency_key_and_answers_are_classified() -> None:
    seen: list[dict[str, Any]] = []
    event = make_event("o1", "paid", payload={"amount": 12})

    async def main() -> list[Any]:
        runner, url = await _serve({"ok": (201, {}), "busy": (503, {"Retry-After": "7"}),
                                    "refused": (400, {})}, seen)
        effects = Effects(url)
        try:
            return [await effects.call(name, event) for name in ("ok", "busy", "refused", "ok")]
        finally:
            await effects.close()
            await runner.cleanup()

    ok, busy, refused, again = asyncio.run(main())
    assert (ok.outcome, busy.outcome, refused.outcome, again.outcome) == (
        Outcome.OK, Outcome.TRANSIENT, Outcome.TERMINAL, Outcome.OK)
    assert busy.retry_after_s == 7.0 and "HTTP 503 answer of busy" in busy.message
    assert "HTTP 400" in refused.message
    assert [s["effect"] for s in seen] == ["ok", "busy", "refused", "ok"]
    assert all(s["key"] == event["event_id"] and s["type"] == "application/json" for s in seen)
    assert seen[0]["body"] == {"order_id": "o1", "client_id": event["client_id"],
                               "event_id": event["event_id"], "type": "paid", "payload": {"amount": 12}}


def test_no_service_is_transient_and_a_bad_url_is_terminal() -> None:
    event = make_event("o1", "paid")

    async def main() -> list[Any]:
        nobody, bad = Effects(f"http://127.0.0.1:{free_port()}"), Effects("http://[not-an-address")
        try:
            return [await nobody.call("ok", event), await bad.call("ok", event)]
        finally:
            await nobody.close()
            await bad.close()

    unreachable, bad_url = asyncio.run(main())
    assert unreachable.outcome is Outcome.TRANSIENT and "connection error" in unreachable.message
    assert bad_url.outcome is Outcome.TERMINAL and "bad URL" in bad_url.message


def test_calls_in_flight_are_counted_until_their_answer_or_failure() -> None:
    """The agent shares the loop sooner while answers are awaited (engine/stalls.py `LoopTurn`)."""
    event = make_event("o1", "paid")
    answer_now = asyncio.Event()
    counted: list[int] = []

    async def main() -> None:
        async def slow(request: web.Request) -> web.Response:
            await answer_now.wait()
            return web.Response(status=200)

        runner, url = await _serve_handler(slow)
        effects, nobody = Effects(url), Effects(f"http://127.0.0.1:{free_port()}")
        try:
            calls = [asyncio.create_task(effects.call("ship", event)) for _ in range(3)]
            for _ in range(200):
                if effects.in_flight == 3:
                    break
                await asyncio.sleep(0.005)
            counted.append(effects.in_flight)
            answer_now.set()
            await asyncio.gather(*calls)
            counted.append(effects.in_flight)
            await nobody.call("ship", event)  # a connection refused: counted out all the same
            counted.append(nobody.in_flight)
        finally:
            await effects.close()
            await nobody.close()
            await runner.cleanup()

    asyncio.run(main())
    assert counted == [3, 0, 0]
