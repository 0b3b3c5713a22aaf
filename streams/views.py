"""Table views over HTTP (Faust web), answering from any worker.

An order's partition cannot be computed from its id (order_id is not the partition key, and outside
producers may use any partitioner), so a worker looks in its own active partitions and otherwise
asks the other workers, found through Faust's assignor (`app.router.tables_metadata()`).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
from faust.web import Request, Response, View

from streams.app import app
from streams.machine import view

ID = re.compile(r"^[A-Za-z0-9._:@\-]{1,128}$")
LOCAL = "local"


def _store() -> Any:
    from agents.orders import store

    return store


def _peers() -> list[str]:
    me = str(app.conf.canonical_url).rstrip("/")
    hosts = {str(h).rstrip("/") for h in app.router.tables_metadata()}
    return sorted(h for h in hosts if h != me)


async def _ask_peers(path: str) -> list[tuple[int, Any]]:
    """GET `path?local=1` on every other worker; their (status, json) answers."""
    peers = _peers()
    if not peers:
        return []
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async def one(host: str) -> tuple[int, Any]:
            try:
                async with session.get(f"{host}{path}", params={LOCAL: "1"}) as response:
                    return response.status, await response.json()
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                return 599, {"error": f"{host}: {exc}"}
        return list(await asyncio.gather(*(one(h) for h in peers)))


def _bad_id(web: View, what: str) -> Response:
    return web.json({"error": f"invalid {what}: 1 to 128 characters of A-Z a-z 0-9 . _ : @ -"},
                    status=400)


@app.page("/orders/{order_id}/")
class OrderView(View):
    async def get(self, request: Request, order_id: str) -> Response:
        if not ID.match(order_id):
            return _bad_id(self, "order id")
        order = _store().get_active(order_id)
        if order is not None and order["status"] is not None:
            return self.json(view(order))
        if request.query.get(LOCAL) is None:
            for status, body in await _ask_peers(f"/orders/{order_id}/"):
                if status == 200:
                    return self.json(body)
        return self.json({"error": f"order {order_id} not found"}, status=404)


@app.page("/health/")
class HealthView(View):
    async def get(self, request: Request) -> Response:
        return self.json({"status": "ok"})


@app.page("/ready/")
class ReadyView(View):
    async def get(self, request: Request) -> Response:
        recovery = getattr(app.tables, "recovery", None)
        ready = bool(not app.rebalancing and recovery is not None
                     and recovery.completed.is_set() and app.assignor.assigned_actives())
        return self.json({"ready": ready}, status=200 if ready else 503)
