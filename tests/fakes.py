"""Kafka-free stand-ins for unit tests of the processor."""

from __future__ import annotations

from typing import Any

from streams.core.machine import Order
from streams.effects import EffectResult, Outcome


class MemoryStore:
    """The order table as a dict (no changelog, no RocksDB)."""

    def __init__(self) -> None:
        self.orders: dict[str, Order] = {}

    def get(self, order_id: str) -> Order | None:
        return self.orders.get(order_id)

    def put(self, order: Order) -> None:
        self.orders[order["order_id"]] = order

    def remove(self, order: Order) -> None:
        self.orders.pop(order["order_id"], None)


class ScriptedEffects:
    """Answers effect calls from a script: a list of outcomes consumed in order, then OK."""

    def __init__(self, *script: EffectResult) -> None:
        self.script = list(script)
        self.calls: list[tuple[str, str]] = []
        self.enabled = True

    async def call(self, effect: str, event: dict[str, Any]) -> EffectResult:
        self.calls.append((effect, event["event_id"]))
        return self.script.pop(0) if self.script else EffectResult(Outcome.OK)


class Recorder:
    """Collects what the processor sends to Kafka."""

    def __init__(self) -> None:
        self.dead_letters: list[dict[str, Any]] = []
        self.retries: list[dict[str, Any]] = []
        self.changes: list[dict[str, Any]] = []

    def change(self, record: dict[str, Any]) -> None:
        self.changes.append(record)

    async def dead_letter(self, letter: dict[str, Any]) -> None:
        self.dead_letters.append(letter)

    async def retry(self, retry: dict[str, Any], partition: int) -> None:
        self.retries.append(retry)


class MemoryClosed:
    """Markers of removed orders as a dict."""

    def __init__(self) -> None:
        self.markers: dict[str, dict[str, Any]] = {}

    def get(self, order_id: str) -> dict[str, Any] | None:
        return self.markers.get(order_id)

    def put(self, marker: dict[str, Any]) -> None:
        self.markers[marker["order_id"]] = marker

    def drop(self, order_id: str) -> None:
        self.markers.pop(order_id, None)
