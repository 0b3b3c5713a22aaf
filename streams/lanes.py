"""Key-hashed lanes: events of one order run one after another; different orders run concurrently.

A lane is a queue and a task. `hash(order_id) % n` picks the lane, so one order's events keep their
partition order while a slow order only holds up its own lane. Each job runs with Faust's
current-event context set to the Kafka event it serves, so table writes go to that event's
changelog partition. The job's `done` callback acks the event: Faust commits a partition's offset
only up to the first event not yet acked, so a crash never skips an unfinished event.

A lane runs one job per turn of the event loop. A job that awaits nothing (no effect to call)
finishes without yielding, and a lane with a backlog would otherwise run its whole queue in one
step: the 64 lanes then held each turn for a whole batch of events (about 100 ms), and an HTTP
request, which needs a few turns, waited for several of them (`/health` took 300 ms).

The jobs in flight are bounded over all lanes (2,048): every one is an event each garbage
collection walks, and with 256 per lane a million orders' backlog made those collections, and so
some turns, long enough for a `/health` answer (three turns) to take over 100 ms. The lanes can
also share each turn (`TurnShare`, ORDERFLOW_LANE_TURN_MS, off by default): once a turn has run
that long, the lanes that have not run in it yet wait for the next one. With effects that cost a
quarter of the events/s (bench/RESULTS.md, 2026-12-02 05:40 and 06:36).
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from streams.engine.context import set_current

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]


def lane_of(order_id: str, lanes: int) -> int:
    """A stable lane number (crc32, not Python's salted hash, so it is the same in every process)."""
    return zlib.crc32(order_id.encode()) % lanes


class TurnShare:
    """How long a turn of the event loop may have run before a lane starts a job in it (0: no
    limit).

    A turn's start is marked by a callback that the first lane to look schedules: it runs at the
    head of the next turn, before the lanes that turn resumes. A lane that finds the turn already
    long waits for the next one (`asyncio.sleep(0)`), where it is among the first to run. The
    limit is on the turn's time, not on the jobs' own: a job waiting for an effect takes no turn's
    time while it waits."""

    def __init__(self, budget_s: float) -> None:
        self.budget_s = budget_s
        self._started = 0.0
        self._renewal_due = False

    def spent(self) -> bool:
        if self.budget_s <= 0:
            return False
        if not self._renewal_due:
            self._renewal_due = True
            asyncio.get_running_loop().call_soon(self._renew)
        return time.perf_counter() - self._started >= self.budget_s

    def _renew(self) -> None:
        self._started = time.perf_counter()
        self._renewal_due = False


class Lanes:
    """`submit(order_id, event, job, done)` runs `job` in the order's lane, then calls `done`.

    At most `in_flight` jobs are queued or running over all lanes; `submit` waits for room then.
    The bound is shared, not per lane: a lane whose order waits for an effect may queue more while
    the others go on (a bound per lane made the agent wait on that one lane while the others ran
    dry). Every job in flight is an event the garbage collector walks, so the bound is small."""

    def __init__(self, lanes: int, in_flight: int = 2048,
                 on_error: Callable[[BaseException], None] | None = None,
                 is_current: Callable[[Any], bool] = lambda _event: True,
                 turn_budget_s: float = 0.0) -> None:
        self.size = lanes
        self.share = TurnShare(turn_budget_s)
        self._queues: list[asyncio.Queue[tuple[Any, Job, Callable[[], None]]]] = [
            asyncio.Queue() for _ in range(lanes)
        ]
        self._room = asyncio.Semaphore(in_flight)
        self._tasks: list[asyncio.Task[None]] = []
        self._on_error = on_error
        self._is_current = is_current  # False for an event fetched before the last rebalance

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._run(q), name=f"lane-{i}")
                           for i, q in enumerate(self._queues)]

    async def submit(self, order_id: str, event: Any, job: Job, done: Callable[[], None]) -> None:
        """Queue a job; waits only while `in_flight` jobs are (backpressure on the partitions)."""
        self.start()
        await self._room.acquire()
        self._queues[lane_of(order_id, self.size)].put_nowait((event, job, done))

    def depth(self) -> int:
        """Jobs queued and not yet started, over all lanes."""
        return sum(q.qsize() for q in self._queues)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _run(self, queue: asyncio.Queue[tuple[Any, Job, Callable[[], None]]]) -> None:
        share = self.share
        while True:
            event, job, done = await queue.get()
            if event is not None and not self._is_current(event):
                queue.task_done()  # fetched before a rebalance: Faust redelivers it, never ack it
                self._room.release()
                continue
            while share.spent():
                await asyncio.sleep(0)  # this turn's budget is taken: the next turn
            try:
                set_current(event)
                await job()
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # never ack a job that failed: leave it uncommitted
                log.exception("lane job failed; its event stays uncommitted")
                if self._on_error is not None:
                    self._on_error(exc)
            else:
                done()
            finally:
                queue.task_done()
                self._room.release()
            if not queue.empty():
                await asyncio.sleep(0)  # one job per turn (see the module's docstring)
