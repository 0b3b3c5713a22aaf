"""A watch on the event loop: how late its turns run, and where it is when one step holds it.

A worker whose loop is held answers nothing (`/health` included), sends no heartbeat and commits
nothing; held longer than the session timeout, it is thrown out of its group. The loop runs a beat
every 20 ms; how late each beat runs is the loop's lag (what a request waits before its next turn),
handed to `observe_lag` (the `orderflow_event_loop_lag_seconds` histogram). A thread checks the
last beat, and when it is older than ORDERFLOW_STALL_REPORT_MS (0: off) logs the loop thread's
stack once per stall, so the log says what held it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable

log = logging.getLogger(__name__)
BEAT_S = 0.02


_watched: set[int] = set()


def watch_stalls(loop: asyncio.AbstractEventLoop, report_after_s: float,
                 observe_lag: Callable[[float], None] | None = None) -> None:
    """Start the beat on `loop` (measuring lag when `observe_lag` is given) and, when
    `report_after_s` > 0, the thread that logs long stalls; once per loop."""
    if id(loop) in _watched or (report_after_s <= 0 and observe_lag is None):
        return
    _watched.add(id(loop))
    last = [time.monotonic()]
    loop_thread = threading.get_ident()

    def beat() -> None:
        now = time.monotonic()
        if observe_lag is not None:
            observe_lag(max(0.0, now - last[0] - BEAT_S))
        last[0] = now
        loop.call_later(BEAT_S, beat)

    loop.call_soon_threadsafe(beat)
    if report_after_s <= 0:
        return
    _watch_collections(report_after_s)

    def watch() -> None:
        reported = 0.0
        while True:
            time.sleep(BEAT_S)
            held = time.monotonic() - last[0]
            if held > report_after_s and last[0] != reported:
                reported = last[0]
                frame = sys._current_frames().get(loop_thread)
                stack = "".join(traceback.format_stack(frame)[-12:]) if frame else "(no frame)"
                log.warning("the event loop is held for %.0f ms so far, at:\n%s", held * 1000, stack)

    threading.Thread(target=watch, name="orderflow-stall-watch", daemon=True).start()


def _watch_collections(report_after_s: float) -> None:
    """Log a garbage collection that took longer than the stall limit: the stall report's stack
    shows only where the collection happened to start, not that it was one."""
    started = [0.0]

    def timing(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        took = time.perf_counter() - started[0]
        if took > report_after_s:
            log.warning("a garbage collection of generation %d took %.0f ms (%d objects collected)",
                        info.get("generation", -1), took * 1000, info.get("collected", 0))

    gc.callbacks.append(timing)


class LoopTurn:
    """Yields to the event loop once the task using it has held the loop for `budget_s`: a task
    working through a batch shares the loop with the rest (the web server, heartbeats, lanes).

    While `answers_awaited()` (effect calls in flight), it yields after `awaiting_budget_s`: an
    answer that came in is read, and its job resumed, only between turns, and the job's whole
    lane waits meanwhile. Measured with effects, 0.5 ms instead of 2 gave 78% of the lanes' bound
    instead of 73%; without effects, 2 ms keeps the turns' own cost down (bench/RESULTS.md)."""

    def __init__(self, budget_s: float = 0.002, awaiting_budget_s: float = 0.0005,
                 answers_awaited: Callable[[], bool] = lambda: False) -> None:
        self.budget_s = budget_s
        self.awaiting_budget_s = min(awaiting_budget_s, budget_s)
        self._answers_awaited = answers_awaited
        self._since = time.perf_counter()

    async def share(self) -> None:
        if self.due():
            await self.give()

    def due(self) -> bool:
        """Whether the task has held the loop long enough to give it up now. A hot loop asks this
        and awaits `give` only when true: `await share()` makes a coroutine every time it is asked
        (once per event in the agent), though it yields once in many."""
        held = time.perf_counter() - self._since
        return held >= self.awaiting_budget_s and (held >= self.budget_s or self._answers_awaited())

    async def give(self) -> None:
        """Let the loop turn, and start counting the next hold."""
        await asyncio.sleep(0)
        self._since = time.perf_counter()
