"""Events are acked only after the producer flushed what they sent."""

from __future__ import annotations

import asyncio
from typing import Any

from streams.acks import FlushThenAck


class FakeEvent:
    def __init__(self, log: list[str], name: str) -> None:
        self.log, self.name = log, name

    def ack(self) -> bool:
        self.log.append(f"ack {self.name}")
        return True


async def test_acks_come_after_the_flush_in_one_batch() -> None:
    log: list[str] = []

    async def flush() -> None:
        await asyncio.sleep(0.01)
        log.append("flushed")

    gate = FlushThenAck(flush, interval_s=0.01)
    runner = asyncio.create_task(gate.run())
    gate.done(FakeEvent(log, "a"))
    gate.done(FakeEvent(log, "b"))
    assert log == []
    await asyncio.sleep(0.1)
    runner.cancel()
    assert log == ["flushed", "ack a", "ack b"]


async def test_changes_are_written_before_the_flush_and_stale_events_are_never_acked() -> None:
    log: list[str] = []

    async def flush() -> None:
        log.append("flushed")

    async def write(_batch: list[Any]) -> bool:
        log.append("written")
        await asyncio.sleep(0)  # the loop turns while changes are written
        return True

    gate = FlushThenAck(flush, interval_s=0.01, before_flush=write,
                        is_current=lambda event: event.name != "old")
    runner = asyncio.create_task(gate.run())
    for name in ("a", "old", "b"):
        gate.done(FakeEvent(log, name))
    await asyncio.sleep(0.1)
    runner.cancel()
    assert log == ["written", "flushed", "ack a", "ack b"]


async def test_a_batch_whose_changes_could_not_be_written_is_not_acked_until_they_are() -> None:
    log: list[str] = []
    attempts = iter([False, True])

    async def flush() -> None:
        log.append("flushed")

    async def write(_batch: list[Any]) -> bool:
        return next(attempts)

    gate = FlushThenAck(flush, interval_s=0.01, before_flush=write)
    runner = asyncio.create_task(gate.run())
    gate.done(FakeEvent(log, "a"))
    await asyncio.sleep(0.2)
    assert log == []
    await asyncio.sleep(0.5)
    runner.cancel()
    assert log == ["flushed", "ack a"]
