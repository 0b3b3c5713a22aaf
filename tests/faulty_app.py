"""The worker's app with two bugs planted, for tests of per-message isolation on a real worker.

`faust -A tests.faulty_app worker` runs the real app, except that:
- an event whose id starts with `bug:` or `fatal:` makes the processor raise once its transition is
  decided, while it hands the change record on (any bug would do; the state machine itself is
  compiled, and compiled functions call each other directly: nothing patched here reaches them);
- the dead letter of an event whose id starts with `fatal:` cannot be sent (as if Kafka refused
  it), which no message can explain: the worker must stop, non-zero.
"""

from __future__ import annotations

from typing import Any

from streams.app import app
from streams.core.machine import ChangeRecord
from streams.worker import OrderWorker

__all__ = ["app"]

_send_change = OrderWorker._send_change
_send = OrderWorker.send_dead_letter


def _buggy_send_change(self: OrderWorker, record: ChangeRecord) -> None:
    if record["event_id"].startswith(("bug:", "fatal:")):
        raise ZeroDivisionError("a planted bug")
    _send_change(self, record)


async def _failing_send(self: OrderWorker, letter: dict[str, Any]) -> None:
    if str(letter["event"].get("event_id", "")).startswith("fatal:"):
        raise ConnectionError("the dead-letter topic refused the letter (planted)")
    await _send(self, letter)


# on the class, before a worker builds its processor with these bound methods
OrderWorker._send_change = _buggy_send_change  # type: ignore[method-assign]
OrderWorker.send_dead_letter = _failing_send  # type: ignore[method-assign]
