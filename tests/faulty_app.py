"""The worker's app with two bugs planted, for tests of per-message isolation on a real worker.

`faust -A tests.faulty_app worker` runs the real app, except that:
- an event whose payload has `"plant": "bug"` makes the state machine raise (any bug would do);
- a dead letter about an event with `"plant": "fatal"` cannot be sent (as if Kafka refused it),
  which no message can explain: the worker must stop, non-zero.
"""

from __future__ import annotations

from typing import Any

from streams.app import app
from streams.core import machine
from streams.worker import OrderWorker

__all__ = ["app"]

_apply = machine.apply
_send = OrderWorker.send_dead_letter


def _plant(event: Any) -> Any:
    payload = event.get("payload") if isinstance(event, dict) else None
    return payload.get("plant") if isinstance(payload, dict) else None


def _buggy_apply(order: Any, event: Any, *args: Any) -> Any:
    if _plant(event) in ("bug", "fatal"):
        raise ZeroDivisionError("a planted bug")
    return _apply(order, event, *args)


async def _failing_send(self: OrderWorker, letter: dict[str, Any]) -> None:
    if _plant(letter["event"]) == "fatal":
        raise ConnectionError("the dead-letter topic refused the letter (planted)")
    await _send(self, letter)


machine.apply = _buggy_apply
OrderWorker.send_dead_letter = _failing_send  # type: ignore[method-assign]  # before a worker builds it
