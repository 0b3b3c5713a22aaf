"""Realistic order traffic with the outcome it must lead to (`orderflow simulate`, the demo, tests).

Lifecycles of the default lifecycle, with cancellations, duplicates (the same event sent again),
out-of-order neighbours (the later one arrives first and must be parked) and a few impossible
events (rejected). Each client's events keep the order a producer would send them in; clients are
interleaved. The expected final status and version of every order are computed alongside, so a run
can be checked order by order through the views.
"""

from __future__ import annotations

import json
import random
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from streams.config import Settings
from streams.tools.publisher import Publisher

CHAINS = [
    ["created", "accepted", "paid", "shipped", "delivered"],
    ["created", "paid", "shipped", "delivered"],
    ["created", "cancelled"],
    ["created", "accepted", "cancelled"],
    ["created", "paid", "cancelled"],
    ["created", "paid", "shipped"],
]
# Swapping these neighbours makes the later one early (parked), never applicable out of turn.
SWAPPABLE = {("created", "accepted"), ("created", "paid"), ("created", "cancelled"),
             ("paid", "shipped"), ("shipped", "delivered")}


def make_event(order_id: str, kind: str, client_id: str, **extra: Any) -> dict[str, Any]:
    """A valid envelope with a fresh event id, occurring now."""
    return {
        "event_id": extra.pop("event_id", uuid.uuid4().hex), "order_id": order_id,
        "client_id": client_id, "type": kind,
        "occurred_at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "schema_version": 1, **extra,
    }


@dataclass
class Traffic:
    events: list[dict[str, Any]] = field(default_factory=list)
    expected: dict[str, tuple[str, int]] = field(default_factory=dict)  # order -> (status, version)
    clients: dict[str, str] = field(default_factory=dict)  # order -> client
    impossible: list[str] = field(default_factory=list)  # event ids that must be rejected
    duplicates: int = 0
    swapped: int = 0


def traffic(orders: int, clients: int, seed: int, prefix: str = "o", duplicate_share: float = 0.15,
            swap_share: float = 0.3, impossible_every: int = 4) -> Traffic:
    """`orders` lifecycles over `clients` clients (see the module docstring)."""
    rng = random.Random(seed)
    result = Traffic()
    per_client: dict[str, list[dict[str, Any]]] = {}
    for n in range(orders):
        order_id, client_id = f"{prefix}{n}", f"{prefix}c{n % clients}"
        chain = CHAINS[n % len(CHAINS)]
        events = [make_event(order_id, kind, client_id=client_id) for kind in chain]
        for i in range(len(events) - 1):
            pair = (events[i]["type"], events[i + 1]["type"])
            if pair in SWAPPABLE and rng.random() < swap_share:
                events[i], events[i + 1] = events[i + 1], events[i]
                result.swapped += 1
                break
        for event in list(events):
            if rng.random() < duplicate_share:
                events.insert(rng.randrange(events.index(event) + 1, len(events) + 1), dict(event))
                result.duplicates += 1
        if impossible_every and chain[-1] == "delivered" and n % impossible_every == 0:
            late = make_event(order_id, "cancelled", client_id=client_id)
            events.append(late)
            result.impossible.append(late["event_id"])
        result.expected[order_id] = (chain[-1], len(chain))
        result.clients[order_id] = client_id
        per_client.setdefault(client_id, []).extend(events)
    queues = list(per_client.values())  # interleave clients, keeping each client's own order
    while queues:
        queue = rng.choice(queues)
        result.events.append(queue.pop(0))
        if not queue:
            queues.remove(queue)
    return result


def write_expected(made: Traffic, path: Path) -> None:
    """One JSON line per order: its id, client, and the status and version it must end with."""
    with path.open("w") as out:
        for order_id, (status, version) in made.expected.items():
            out.write(json.dumps({"order_id": order_id, "client_id": made.clients[order_id],
                                  "status": status, "version": version}) + "\n")


def read_expected(path: Path) -> dict[str, dict[str, Any]]:
    with path.open() as lines:
        return {row["order_id"]: row for row in map(json.loads, lines) if row}


def progress_bar(done: int, total: int, started: float, out: IO[str] = sys.stderr) -> None:
    width = 30
    filled = width * done // max(total, 1)
    rate = done / max(time.monotonic() - started, 1e-6)
    out.write(f"\r  [{'#' * filled}{'.' * (width - filled)}] {done}/{total} events, {rate:,.0f}/s")
    if done >= total:
        out.write("\n")
    out.flush()


def publish(settings: Settings, made: Traffic, rate: float,
            progress: Callable[[int, int, float], None] | None = progress_bar) -> int:
    """Publish at about `rate` events/s (0: as fast as possible); the number delivered."""
    publisher = Publisher(settings)
    started = time.monotonic()
    total = len(made.events)
    shown = 0.0
    for sent, event in enumerate(made.events, start=1):
        publisher.send(event)
        now = time.monotonic()
        if rate > 0 and (ahead := started + sent / rate - now) > 0:
            time.sleep(ahead)
        if progress is not None and (now - shown >= 0.5 or sent == total):
            progress(sent, total, started)
            shown = now
    report = publisher.flush()
    return report.sent
