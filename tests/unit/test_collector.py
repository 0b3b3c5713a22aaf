"""Garbage collection paced by the clock (streams/collector.py): young garbage is collected on the
beat even when Python's own thresholds would never fire, and the ready worker's heap is frozen once."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from streams.collector import PacedCollector


@pytest.fixture
def automatic_collection_off() -> Iterator[None]:
    gc.disable()  # only the collector collects
    try:
        yield
    finally:
        gc.unfreeze()
        gc.enable()


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only a collection frees it


def test_cyclic_garbage_is_collected_on_the_clock_and_the_ready_heap_is_frozen_once(
        automatic_collection_off: None) -> None:
    ready = [False]
    collector = PacedCollector(0.01, middle_every=3, full_every=2, ready=lambda: ready[0])

    async def scenario() -> tuple[bool, int, bool, int, int]:
        collector.start(asyncio.get_running_loop())
        garbage = Node()
        freed = weakref.ref(garbage)
        del garbage
        await asyncio.sleep(0.1)
        frozen_before_ready = gc.get_freeze_count()
        ready[0] = True
        await asyncio.sleep(0.05)
        frozen = gc.get_freeze_count()
        kept = [Node() for _ in range(100)]  # alive, made after the freeze: never frozen
        later = Node()
        later_freed = weakref.ref(later)
        del later
        await asyncio.sleep(0.1)
        assert len(kept) == 100
        return freed() is None, frozen_before_ready, later_freed() is None, frozen, gc.get_freeze_count()

    collected, frozen_before_ready, collected_after_freeze, frozen, frozen_at_end = asyncio.run(scenario())
    assert collected and collected_after_freeze
    assert frozen_before_ready == 0 and frozen > 0 and frozen_at_end <= frozen


def test_every_middle_every_th_collection_takes_the_middle_generation_and_the_full_one_rarer() -> None:
    collector = PacedCollector(0.1, middle_every=3, full_every=2)
    assert [collector.generation_due() for _ in range(12)] == [0, 0, 1, 0, 0, 2, 0, 0, 1, 0, 0, 2]
