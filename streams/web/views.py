"""Table views over HTTP (Faust web), answering from any worker.

An order's partition cannot be computed from its id (order_id is not the partition key, and outside
producers may use any partitioner), so Faust's key-based `table_route` cannot find it. A worker
looks in its own active partitions and otherwise asks the other workers, found through Faust's
assignor (`app.router.tables_metadata()`), with `?local=1` so the question never bounces on.
`/stats` always gathers every worker's share and sums it per partition.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote, urlencode

import aiohttp
from aiohttp import web
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST
from yarl import URL

from schemas.envelope import ID_RULE, id_problem
from streams.app import app, lifecycle, settings
from streams.core import machine as m
from streams.core.machine import view
from streams.core.stats import merge
from streams.engine.supervision import is_ready
from streams.index import BadCursor, ClientEntry, decode_cursor, merge_pages
from streams.web import drawing
from streams.worker import worker

LOCAL = "local"
log = logging.getLogger(__name__)
_UPLOT = Path(__file__).with_name("vendor") / "uplot"  # vendored from npm (its SOURCE.md): no network
DASHBOARD = (Path(__file__).with_name("dashboard.html").read_text()
             .replace("{{LIFECYCLE_SVG}}", drawing.svg(lifecycle))
             .replace("{{UPLOT_CSS}}", (_UPLOT / "uPlot.min.css").read_text())
             .replace("{{UPLOT_JS}}", (_UPLOT / "uPlot.iife.min.js").read_text())
             # the effects each transition calls (none without ORDERFLOW_EFFECTS_URL), for the order
             # timeline ("<" escaped: the JSON is inside a <script>)
             .replace("{{EFFECTS}}", json.dumps({f"{row.source or ''}|{row.event}": list(row.effects)
                                                 for row in lifecycle.transitions
                                                 if row.effects and settings.effects_url})
                      .replace("<", "\\u003c")))


def page(path: str) -> Any:
    """Serve a view at `path` and at `path/`: the contract's paths have no trailing slash, while
    Faust's own views (and earlier clients) use one."""
    def register(view: type[View]) -> type[View]:
        app.page(path + "/")(view)
        app.page(path, name=f"{view.__name__}-bare")(type(f"{view.__name__}Bare", (view,), {}))
        return view
    return register


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Unknown paths (e.g. an id with a slash in it) answer a JSON error like every view, never HTML."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return web.json_response({"error": exc.reason}, status=exc.status)
    except Exception as exc:  # a bug: still JSON, and in the log
        log.exception("%s %s failed", request.method, request.path)
        return web.json_response({"error": f"internal error: {type(exc).__name__}"}, status=500)


app.web.web_app.middlewares.append(json_errors)  # type: ignore[attr-defined]  # aiohttp driver


def _me() -> str:
    return str(app.conf.canonical_url).rstrip("/")


def _peers() -> list[str]:
    hosts = {str(h).rstrip("/") for h in app.router.tables_metadata()}
    return sorted(h for h in hosts if h != _me())


async def _ask_peers(path: str) -> list[tuple[int, Any]]:
    """GET `path?local=1` on every other worker; their (status, json) answers."""
    peers = _peers()
    if not peers:
        return []
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async def one(host: str) -> tuple[int, Any]:
            try:
                url = URL(f"{host}{path}", encoded=True)  # keep an id's %2F encoded
                async with session.get(url, params={LOCAL: "1"}) as response:
                    return response.status, await response.json()
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                return 599, {"error": f"{host}: {exc}"}
        return list(await asyncio.gather(*(one(h) for h in peers)))


def _bad_id(web: View, what: str, value: str) -> Response | None:
    """A 400 for an id the ingest would refuse (the one rule, `schemas.envelope.id_problem`)."""
    problem = id_problem(value)
    if problem is None:
        return None
    return web.json({"error": f"invalid {what}: it {problem} ({ID_RULE}, URL-encoded)"}, status=400)


@page("/orders/{order_id}")
class OrderView(View):
    async def get(self, request: Request, order_id: str) -> Response:
        if (bad := _bad_id(self, "order id", order_id)) is not None:
            return bad
        order = worker().store.get_active(order_id)
        if order is not None and order["status"] is not None:
            return self.json(view(order))
        if request.query.get(LOCAL) is None:
            for status, body in await _ask_peers(f"/orders/{quote(order_id, safe='')}/"):
                if status == 200:
                    return self.json(body)
        return self.json({"error": f"order {order_id} not found"}, status=404)


DEFAULT_PAGE, MAX_PAGE = 50, 1000


def _page_query(request: Request) -> tuple[int, str | None, str | None] | str:
    """(limit, status, after) of a client page, or the error to answer with."""
    raw_limit = request.query.get("limit", str(DEFAULT_PAGE))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_PAGE:
        return f"limit must be a whole number from 1 to {MAX_PAGE}"
    status = request.query.get("status")
    if status is not None and status not in lifecycle.statuses:
        return f"unknown status {status!r}; the lifecycle has {', '.join(sorted(lifecycle.statuses))}"
    after = request.query.get("after")
    if after is not None:
        try:
            decode_cursor(after)
        except BadCursor as exc:
            return f"invalid cursor: {exc}"
    return int(raw_limit), status, after


@page("/clients/{client_id}/orders")
class ClientOrdersView(View):
    """A client's orders, newest first, one page at a time, from every worker (a client's orders
    may sit in several partitions when producers used different partitioners). Each worker reads
    its page from its partitions' index (streams/index.py); the pages are merged here."""

    async def get(self, request: Request, client_id: str) -> Response:
        if (bad := _bad_id(self, "client id", client_id)) is not None:
            return bad
        query = _page_query(request)
        if isinstance(query, str):
            return self.json({"error": query}, status=400)
        limit, status, after = query
        w = worker()

        def status_of(order_id: str) -> str | None:
            order = w.store.get_active(order_id)
            return None if order is None else order["status"]

        local = w.index.client_page(w.store.active_partitions(), client_id, after, limit,
                                        status, status_of)
        # Every entry read takes its place in the page, shown or not (an order that only has
        # parked events, or one removed a moment ago): `next` must go on from the last one read.
        orders: dict[str, m.OrderView | None] = {}
        for entry in local.entries:
            order = w.store.get_active(entry.order_id)
            orders[entry.cursor] = view(order) if order is not None and order["status"] else None
        pages = [local.entries]
        bounds = [local.bound] if local.bound is not None else []
        if request.query.get(LOCAL) is not None:
            return self.json({"client_id": client_id, "bound": local.bound,
                              "entries": [{"cursor": e.cursor, "order_id": e.order_id,
                                           "order": orders[e.cursor]} for e in local.entries]})
        path = f"/clients/{quote(client_id, safe='')}/orders/?{urlencode(request.query)}"
        for code, body in await _ask_peers(path):
            if code != 200:
                return self.json({"error": f"a worker did not answer: {body.get('error')}"}, status=503)
            pages.append([ClientEntry(e["order_id"], e["cursor"]) for e in body["entries"]])
            orders.update({e["cursor"]: e["order"] for e in body["entries"]})
            if body.get("bound") is not None:
                bounds.append(body["bound"])
        merged = merge_pages(pages, bounds, limit)
        shown = [shown_order for e in merged.entries if (shown_order := orders[e.cursor]) is not None]
        return self.json({"client_id": client_id, "orders": shown, "next": merged.next})


def _local_share() -> dict[str, Any]:
    """This worker's partitions, once its tables are recovered (counters are restored from one of
    them; before that the partitions are not reported, and /stats says it is not complete)."""
    w = worker()
    recovery = getattr(app.tables, "recovery", None)
    recovered = recovery is not None and recovery.completed.is_set() and not app.rebalancing
    active = w.store.active_partitions() if recovered else []
    partitions = w.stats.local(active)
    stuck = [order_id for p in active for order_id, _ in w.index.stuck(p, 20)]
    lag = {f"{topic}:{partition}": n for (topic, partition), n in w.lag().items()}
    return {"worker": _me(), "partitions": partitions, "stuck_orders": stuck[:20],
            "recent_dead_letters": list(w.stats.recent_dead_letters), "lag": lag}


@page("/stats")
class StatsView(View):
    """Totals over the whole cluster: every worker's per-partition share, each partition once."""

    async def get(self, request: Request) -> Response:
        share = _local_share()
        if request.query.get(LOCAL) is not None:
            return self.json(share)
        shares = [share] + [body for status, body in await _ask_peers("/stats/") if status == 200]
        return self.json(merge(shares, settings.partitions))


@page("/metrics")
class MetricsView(View):
    async def get(self, request: Request) -> Response:
        answer = web.Response(body=worker().metrics.text(), headers={"Content-Type": CONTENT_TYPE_LATEST})
        return cast(Response, answer)  # Faust's aiohttp driver serves aiohttp responses as they are


@page("/health")
class HealthView(View):
    """200 while the worker runs; 503 once its order agent has died (the worker is stopping)."""

    async def get(self, request: Request) -> Response:
        failure = app.agent_state.failure
        if failure is not None:
            return self.json({"status": "failed", "error": f"{type(failure).__name__}: {failure}"},
                             status=503)
        return self.json({"status": "ok"})


@page("/ready")
class ReadyView(View):
    """Ready only while the order agent runs and the partitions are assigned and recovered."""

    async def get(self, request: Request) -> Response:
        ready = is_ready(app)
        return self.json({"ready": ready}, status=200 if ready else 503)


@app.page("/")
class DashboardView(View):
    async def get(self, request: Request) -> Response:
        return self.html(DASHBOARD.replace("{{WORKER}}", _me()))
