"""An independent, deliberately naive model of what orderflow must do with one order's events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streams.core.lifecycle import Lifecycle


@dataclass
class ModelOrder:
    status: str | None = None
    version: int = 0
    seen: set[str] = field(default_factory=set)
    applied: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    parked: list[dict[str, Any]] = field(default_factory=list)
    duplicates: int = 0


def run_model(events: list[dict[str, Any]], lifecycle: Lifecycle) -> ModelOrder:
    """Feed events in order: drop seen ids, apply what fits, park what may fit later (and apply it as
    soon as it fits, oldest first), reject what can never fit (its id may come again)."""
    order = ModelOrder()

    def fits(event: dict[str, Any]) -> bool:
        return lifecycle.step(order.status, event["type"]) is not None

    def take(event: dict[str, Any]) -> None:
        row = lifecycle.step(order.status, event["type"])
        assert row is not None
        order.status = row.target
        order.version += 1
        order.applied.append(event["event_id"])

    for event in events:
        if event["event_id"] in order.seen:
            order.duplicates += 1
            continue
        if fits(event):
            order.seen.add(event["event_id"])
            take(event)
        elif any(lifecycle.step(s, event["type"]) for s in _later(order.status, lifecycle)):
            order.seen.add(event["event_id"])
            order.parked.append(event)
            continue
        else:
            order.rejected.append(event["event_id"])
            continue
        progress = True
        while progress:
            progress = False
            for waiting in list(order.parked):
                if fits(waiting):
                    order.parked.remove(waiting)
                    take(waiting)
                    progress = True
                    break
                if not any(lifecycle.step(s, waiting["type"]) for s in _later(order.status, lifecycle)):
                    order.parked.remove(waiting)
                    order.seen.discard(waiting["event_id"])
                    order.rejected.append(waiting["event_id"])
                    progress = True
                    break
    return order


def _later(status: str | None, lifecycle: Lifecycle) -> set[str | None]:
    """Every status reachable after `status` by one or more rows."""
    found: set[str | None] = set()
    todo = [status]
    while todo:
        current = todo.pop()
        for row in lifecycle.transitions:
            if row.source == current and row.target not in found:
                found.add(row.target)
                todo.append(row.target)
    return found
