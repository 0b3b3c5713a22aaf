"""Garbage collection paced by the clock instead of by allocation counts.

Python collects its young generation once allocations outnumber deallocations by the first
threshold. A worker at full speed allocates and frees almost evenly, so that count creeps up, and
the collection that finally comes walks everything allocated since the last one that is still
alive: the events in flight, the orders being changed, their jobs. At 200,000 orders that was up
to 110,000 objects and 60-130 ms at a time, while `/health` and the heartbeats waited
(bench/RESULTS.md, 2026-12-02). Collected every `young_every_s` instead, the young generation holds
only what the last fraction of a second allocated, a few thousand objects, a few milliseconds.

Every `middle_every`-th collection also takes the middle generation, and every `full_every`-th of
those the whole heap. What the heap holds when the worker is first ready (modules, Faust's,
aiokafka's and aiohttp's objects, tens of thousands, alive for the worker's life) is frozen
(`gc.freeze`), so a full collection walks only what came after. Python's own thresholds stay as a
backstop for a loop held so long that no beat runs.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


class PacedCollector:
    """Runs `gc.collect` on the event loop's clock (see the module docstring)."""

    def __init__(self, young_every_s: float, middle_every: int = 200, full_every: int = 30,
                 ready: Callable[[], bool] = lambda: True) -> None:
        self.young_every_s = young_every_s
        self.middle_every = middle_every
        self.full_every = full_every
        self._ready = ready
        self._collections = 0
        self._frozen = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Collect on `loop` from now on (once per collector)."""
        if self._loop is None and self.young_every_s > 0:
            self._loop = loop
            loop.call_later(self.young_every_s, self._collect)

    def generation_due(self) -> int:
        """The oldest generation the next collection takes, counting it."""
        self._collections += 1
        if self._collections % (self.middle_every * self.full_every) == 0:
            return 2
        return 1 if self._collections % self.middle_every == 0 else 0

    def _collect(self) -> None:
        assert self._loop is not None
        if not self._frozen and self._ready():
            gc.freeze()  # moves every tracked object to the permanent generation: no walk, no pause
            self._frozen = True
            log.info("garbage collection paced: the young generation every %.0f ms, the middle every "
                     "%d, the heap every %d; %d objects of the ready worker frozen",
                     self.young_every_s * 1000, self.middle_every, self.middle_every * self.full_every,
                     gc.get_freeze_count())
        gc.collect(self.generation_due())
        self._loop.call_later(self.young_every_s, self._collect)
