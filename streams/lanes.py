"""Key-hashed lanes: events of one order run one after another; different orders run concurrently.

A lane is a queue and a task. `hash(order_id) % n` picks the lane, so one order's events keep their
partition order while a slow order only holds up its own lane. Each job runs with Faust's
current-event context set to the Kafka event it serves, so table writes go to that event's
changelog partition. The job's `done` callback acks the event: Faust commits a partition's offset
only up to the first event not yet acked, so a crash never skips an unfinished event.

A lane with a backlog runs its queued jobs back to back for at most `STEP_BUDGET_S` (0.25 ms) of
one step of its task, then lets the loop turn (a step ends anyway where a job waits, on an effect).
A job that awaits nothing (no effect to call) finishes without yielding, and a lane would otherwise
run its whole queue in one step: the 64 lanes then held each turn for a whole batch of events
(about 100 ms), and an HTTP request, which needs a few turns, waited for several of them (`/health`
took 300 ms); with the budget a turn holds at most 64 x 0.25 ms of the lanes' jobs. The budget is
the lane's own, not the turn's: with a budget on the turn (2 ms, until 2026-12-05), the lanes that
came late in a long turn ran one job per turn, and behind each answered effect the rest of its
order (four more events, then the next order up to its call) took a turn a job: 6-12 ms at the 90th
percentile from a lane's answer to its next call, against 0.2 ms with the lane's own budget, and
about five points more of the lanes' bound (bench/RESULTS.md, 2026-12-05).

The jobs in flight are bounded over all lanes (2,048): every one is an event each garbage
collection walks, and with 256 per lane a million orders' backlog made those collections, and so
some turns, long enough for a `/health` answer (three turns) to take over 100 ms. The lanes can
also share each turn (`TurnShare`, ORDERFLOW_LANE_TURN_MS, off by default): once a turn has run
that long, the lanes that have not run in it yet wait for the next one. With effects that cost a
quarter of the events/s (bench/RESULTS.md, 2026-12-02 05:40 and 06:36).

**Jobs start eagerly.** Most jobs never wait (no effect to call): queueing each one and running it
from the lane's task cost a queue put and get, a task wake-up and a turn of the loop per event. So
`submit` to a lane that is idle (nothing queued, no job running) starts the job at once, in the
caller's step, as Python 3.12's eager tasks do; a job that finishes without waiting is done there
and then. A job that does wait (an effect call) is handed, suspended where it waits, to its lane,
which carries it on as its running job, so every later job of that lane still queues behind it
and one order's events keep their order. The caller (the agent) shares the loop by time
(`engine.stalls.LoopTurn`), so a batch of eager jobs does not hold the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Awaitable, Callable, Generator
from typing import Any

from streams.engine.context import set_current

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]

#: how long a lane may run its queued jobs back to back in one step of its task
STEP_BUDGET_S = 0.00025


def lane_of(order_id: str, lanes: int) -> int:
    """A stable lane number (crc32, not Python's salted hash, so it is the same in every process)."""
    return zlib.crc32(order_id.encode()) % lanes


class TurnShare:
    """How long a turn of the event loop may have run before a lane starts a job in it (0: no
    limit), and which turn is running (`current`).

    A turn's start is marked by a callback that the first lane to look schedules: it runs at the
    head of the next turn, before the lanes that turn resumes. A lane that finds the turn already
    long waits for the next one (`asyncio.sleep(0)`), where it is among the first to run. The
    limit is on the turn's time, not on the jobs' own: a job waiting for an effect takes no turn's
    time while it waits."""

    def __init__(self, budget_s: float) -> None:
        self.budget_s = budget_s
        self._started = 0.0
        self._renewal_due = False
        self._turn = 0

    def spent(self) -> bool:
        if self.budget_s <= 0:
            return False
        self._mark()
        return time.perf_counter() - self._started >= self.budget_s

    def current(self) -> int:
        """The number of the turn running now. Exact for telling turns apart: whoever asks in a
        turn schedules the next one's mark, so a later turn never answers the same number."""
        self._mark()
        return self._turn

    def _mark(self) -> None:
        if not self._renewal_due:
            self._renewal_due = True
            asyncio.get_running_loop().call_soon(self._renew)

    def _renew(self) -> None:
        self._started = time.perf_counter()
        self._renewal_due = False
        self._turn += 1


class Lanes:
    """`submit(order_id, event, job, done)` runs `job` in the order's lane, then calls `done`.

    At most `in_flight` jobs are queued or running over all lanes; `submit` waits for room then.
    The bound is shared, not per lane: a lane whose order waits for an effect may queue more while
    the others go on (a bound per lane made the agent wait on that one lane while the others ran
    dry). Every job in flight is an event the garbage collector walks, so the bound is small."""

    def __init__(self, lanes: int, in_flight: int = 2048,
                 on_error: Callable[[BaseException], None] | None = None,
                 is_current: Callable[[Any], bool] = lambda _event: True,
                 turn_budget_s: float = 0.0, eager: bool = True,
                 step_budget_s: float = STEP_BUDGET_S) -> None:
        self.size = lanes
        self.share = TurnShare(turn_budget_s)
        self.eager = eager  # start a job at once when its lane is idle (see the module docstring)
        self.started_eagerly = 0  # jobs started in the caller's step (finished there, or handed on)
        self._queues: list[asyncio.Queue[tuple[Any, Job, Callable[[], None]]]] = [
            asyncio.Queue() for _ in range(lanes)
        ]
        self._running = [False] * lanes  # a lane's task is between taking a job and finishing it
        self._room = asyncio.Semaphore(in_flight)
        self._tasks: list[asyncio.Task[None]] = []
        self._step_budget_s = step_budget_s  # see the module docstring
        self._turns = TurnShare(0.0)  # tells a lane's steps apart
        self._on_error = on_error
        self._is_current = is_current  # False for an event fetched before the last rebalance

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._run(q), name=f"lane-{i}")
                           for i, q in enumerate(self._queues)]

    async def submit(self, order_id: str, event: Any, job: Job, done: Callable[[], None]) -> None:
        """Run the job now if its lane is idle (eager), else queue it behind the lane's jobs; waits
        only while `in_flight` jobs are queued or running (backpressure on the partitions)."""
        self.start()
        await self._room.acquire()
        lane = lane_of(order_id, self.size)
        queue = self._queues[lane]
        if self.eager and not self._running[lane] and queue.empty() and not self.share.spent():
            self._start_eagerly(queue, event, job, done)
        else:
            queue.put_nowait((event, job, done))

    def _start_eagerly(self, queue: asyncio.Queue[tuple[Any, Job, Callable[[], None]]], event: Any,
                       job: Job, done: Callable[[], None]) -> None:
        """Run `job` in this step up to its first wait; if it waits, its lane carries it on."""
        self.started_eagerly += 1
        set_current(event)
        coroutine = job()
        try:
            waiting_for = coroutine.send(None)  # type: ignore[attr-defined]
        except StopIteration:
            self._finish(done, None)
            return
        except asyncio.CancelledError:
            self._room.release()
            raise
        except BaseException as exc:
            self._finish(done, exc)
            return
        queue.put_nowait((event, _Resumed(coroutine, waiting_for), done))

    def _finish(self, done: Callable[[], None], error: BaseException | None) -> None:
        """A job ended: ack it when it succeeded, never when it failed (left uncommitted)."""
        try:
            if error is None:
                done()
            else:
                log.error("lane job failed; its event stays uncommitted", exc_info=error)
                if self._on_error is not None:
                    self._on_error(error)
        finally:
            self._room.release()

    def depth(self) -> int:
        """Jobs queued and not yet started, over all lanes."""
        return sum(q.qsize() for q in self._queues)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _run(self, queue: asyncio.Queue[tuple[Any, Job, Callable[[], None]]]) -> None:
        """Runs the lane's jobs in order; queued ones back to back within one step of the lane's
        task for at most `step_budget_s` (a step ends where a job waits, e.g. on an effect)."""
        lane = self._queues.index(queue)
        turns, budget = self._turns, self._step_budget_s
        step_turn = -1
        step_started = 0.0
        while True:
            event, job, done = await queue.get()
            turn = turns.current()
            if turn != step_turn:  # resumed (the queue was empty, or after a yield)
                step_turn, step_started = turn, time.perf_counter()
            self._running[lane] = True
            try:
                await self._run_one(event, job, done)
            finally:
                self._running[lane] = False
                queue.task_done()
            if queue.empty():
                continue
            turn = turns.current()
            if budget <= 0 or (turn == step_turn and time.perf_counter() - step_started >= budget):
                await asyncio.sleep(0)  # the step has run its budget: the next job in the next turn
            elif turn != step_turn:  # the job waited: this step began when it went on
                step_turn, step_started = turn, time.perf_counter()

    async def _run_one(self, event: Any, job: Job, done: Callable[[], None]) -> None:
        started = isinstance(job, _Resumed)  # begun eagerly: finished whatever came since
        if not started and event is not None and not self._is_current(event):
            self._room.release()  # fetched before a rebalance: Faust redelivers it, never ack it
            return
        while not started and self.share.spent():
            await asyncio.sleep(0)  # this turn's budget is taken: the next turn
        try:
            set_current(event)
            await job()
        except asyncio.CancelledError:
            self._room.release()
            raise
        except BaseException as exc:  # never ack a job that failed: leave it uncommitted
            self._finish(done, exc)
        else:
            self._finish(done, None)


class _Resumed:
    """A job's coroutine that began in another step and is suspended on `waiting_for` (what it
    yielded to the event loop: a future, or None for a bare turn); calling it carries it on to its
    end, as an asyncio task would have: the future's outcome is read by the coroutine itself, and a
    cancellation is passed into the future it waits for."""

    def __init__(self, coroutine: Any, waiting_for: Any) -> None:
        self.coroutine = coroutine
        self.waiting_for = waiting_for

    async def __call__(self) -> None:
        coroutine, waiting_for = self.coroutine, self.waiting_for
        while True:
            try:
                await _Waiting(waiting_for)
            except asyncio.CancelledError:
                coroutine.close()
                raise
            try:
                waiting_for = coroutine.send(None)
            except StopIteration:
                return


class _Waiting:
    """Waits, as the lane's task's own wait, for the future a job's coroutine yielded: the future's
    wake-up resumes the lane, and so the job, in the next turn. (`asyncio.wait` took two: its
    callback, then the task's wake-up; with effects each answer came a turn later.) The outcome
    stays in the future for the coroutine to read; a cancellation of the lane's task cancels the
    future (the task's own doing), which the coroutine sees where it waits."""

    __slots__ = ("future",)

    def __init__(self, future: Any) -> None:
        self.future = future

    def __await__(self) -> Generator[Any, None, None]:
        future = self.future
        if future is None:
            yield None  # a bare turn, as `asyncio.sleep(0)`
            return
        try:
            yield future  # blocking already: the coroutine's own `await` marked it
        except asyncio.CancelledError:
            if not future.cancelled():
                raise  # the lane's task was cancelled after the future was done
        except BaseException:  # the future's own error: the coroutine reads it
            pass
