"""Order traffic for integration tests, with the outcome an independent model expects."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from tests.helpers import make_event

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


@dataclass
class Scenario:
    events: list[dict[str, Any]] = field(default_factory=list)
    expected: dict[str, tuple[str, int]] = field(default_factory=dict)  # order -> (status, version)
    impossible: list[str] = field(default_factory=list)  # event ids that must be rejected
    duplicates: int = 0


def scenario(orders: int, clients: int, seed: int, prefix: str = "o") -> Scenario:
    """Valid lifecycles, some neighbours swapped, some events sent twice, a few impossible events.
    Each client's events stay in one ordered list, as a producer would send them."""
    rng = random.Random(seed)
    result = Scenario()
    per_client: dict[str, list[dict[str, Any]]] = {}
    for n in range(orders):
        order_id, client_id = f"{prefix}{n}", f"c{n % clients}"
        chain = CHAINS[n % len(CHAINS)]
        events = [make_event(order_id, kind, client_id=client_id) for kind in chain]
        for i in range(len(events) - 1):
            pair = (events[i]["type"], events[i + 1]["type"])
            if pair in SWAPPABLE and rng.random() < 0.3:
                events[i], events[i + 1] = events[i + 1], events[i]
                break
        for event in list(events):
            if rng.random() < 0.15:
                events.insert(rng.randrange(events.index(event) + 1, len(events) + 1), dict(event))
                result.duplicates += 1
        if chain[-1] == "delivered" and n % 4 == 0:
            late = make_event(order_id, "cancelled", client_id=client_id)
            events.append(late)
            result.impossible.append(late["event_id"])
        result.expected[order_id] = (chain[-1], len(chain))
        per_client.setdefault(client_id, []).extend(events)
    # interleave clients, keeping each client's own order
    queues = list(per_client.values())
    while queues:
        queue = rng.choice(queues)
        result.events.append(queue.pop(0))
        if not queue:
            queues.remove(queue)
    return result
