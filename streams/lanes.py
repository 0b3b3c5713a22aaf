"""Lanes: events of one order run one after another; different orders run concurrently, at most
`lanes` of them at once.

An order with work (a job queued or running) is carried by one lane (a task) until its last job
is done; its later events queue behind it, so they keep their partition order. Any free lane takes
the next order that has work, oldest first: an order is bound to a lane only while it has work,
as Confluent's Parallel Consumer orders by key. Until 2026-12-05 a lane was `crc32(order_id) %
lanes`, a queue per lane: then an order behind a slow one of its lane waited for it while other
lanes stood idle, and a burst ended when the busiest lane did. With effects (a service at 20 ms,
one call per order of five events) 64 hashed lanes could keep at most 94% of themselves in a call
over 12,000 orders and 90% over 3,000, free lanes 99.7% (bench/lanes_model.py, no CPU cost); in
the worker, side by side, 67-81% of the lanes' bound against 79-96% (bench/RESULTS.md,
2026-12-05 08:20-09:50).

Each job runs with Faust's current-event context set to the Kafka event it serves, so table writes
go to that event's changelog partition. The job's `done` callback acks the event: Faust commits a
partition's offset only up to the first event not yet acked, so a crash never skips an unfinished
event.

A lane with a backlog runs its queued jobs (of its order, then of the next order it takes) back to
back for at most `STEP_BUDGET_S` (0.25 ms) of one step of its task, then lets the loop turn (a
step ends anyway where a job waits, on an effect). A job that awaits nothing (no effect to call)
finishes without yielding, and a lane would otherwise run a whole backlog in one step: the 64
lanes then held each turn for a whole batch of events (about 100 ms), and an HTTP request, which
needs a few turns, waited for several of them (`/health` took 300 ms); with the budget a turn
holds at most 64 x 0.25 ms of the lanes' jobs. The budget is the lane's own step's, not the
turn's: with a budget on the turn (2 ms, until 2026-12-05), the lanes that came late in a long
turn ran one job per turn, and behind each answered effect the rest of its order (four more
events, then the next order up to its call) took a turn a job: 6-12 ms at the 90th percentile from
a lane's answer to its next call, against 0.2 ms with the lane's own budget, and about five points
more of the lanes' bound (bench/RESULTS.md, 2026-12-05).

The jobs in flight are bounded over all lanes (2,048): every one is an event each garbage
collection walks, and with 256 per lane a million orders' backlog made those collections, and so
some turns, long enough for a `/health` answer (three turns) to take over 100 ms. The lanes can
also share each turn (`TurnShare`, ORDERFLOW_LANE_TURN_MS, off by default): once a turn has run
that long, the lanes that have not run in it yet wait for the next one. With effects that cost a
quarter of the events/s (bench/RESULTS.md, 2026-12-02 05:40 and 06:36).

**Answers are read between jobs.** A lane's job that waits for an effect is resumed when its
answer is read, and the event loop reads sockets only between its turns: with effects the loop is
busy most of the time, and an answer waited 2.3 ms on average for the turn in progress to end. So
`Lanes(read_answers=...)` is called every `READ_ANSWERS_EVERY_S` (a quarter millisecond) of the
lanes' work, before a job: the effects' client reads what has come, and each answered connection
carries the next waiting call at once (streams/httpclient.py). The lane of an answered job is
resumed by the loop as before; only the next call no longer waits for the turn to end.

**Jobs start eagerly.** Most jobs never wait (no effect to call): queueing each one and running it
from a lane's task cost a queue put and get, a task wake-up and a turn of the loop per event. So
`submit` of an order without work while a lane is free starts the job at once, in the caller's
step, as Python 3.12's eager tasks do; a job that finishes without waiting is done there and then
and took no lane. A job that does wait (an effect call) is handed, suspended where it waits, to a
free lane, which carries it on as its order's running job, so every later job of that order still
queues behind it and keeps its order. The caller (the agent) shares the loop by time
(`engine.stalls.LoopTurn`), so a batch of eager jobs does not hold the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Generator
from typing import Any

from streams.engine.context import set_current

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]

#: how long a lane may run its queued jobs back to back in one step of its task
STEP_BUDGET_S = 0.00025
#: how often, in the lanes' work, the effects' answers that have come are read (see the docstring)
READ_ANSWERS_EVERY_S = 0.00025


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
        self._loop: asyncio.AbstractEventLoop | None = None  # asked once: see `Room`

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
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            loop.call_soon(self._renew)

    def _renew(self) -> None:
        self._started = time.perf_counter()
        self._renewal_due = False
        self._turn += 1


class Room:
    """Places for jobs in flight, and the callers waiting for one, oldest first: what
    `asyncio.Semaphore` does, compiled with the lanes. Every event takes a place and gives it back,
    and the semaphore's Python methods were 1.4% of the loop thread's samples in a profile (take
    and give: 0.24 µs against 0.40). A place given back while callers wait goes to the oldest of
    them directly. The loop is asked once: `asyncio.get_running_loop` is a `getpid` system call
    each time on Python 3.11."""

    def __init__(self, places: int) -> None:
        self.free = places
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def take(self) -> None:
        waiting = self._waiting
        while waiting and waiting[0].done():  # cancelled while waiting
            waiting.popleft()
        if self.free > 0 and not waiting:
            self.free -= 1
            return
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        waiting.append(waiter)
        try:
            await waiter  # a place handed over by `give`
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give()  # handed a place, then cancelled: the next caller's
            raise

    def give(self) -> None:
        waiting = self._waiting
        while waiting:
            waiter = waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.free += 1


class Work:
    """A job for the lanes: `run()` (a coroutine, awaited once), then `done()` once it succeeded.
    `event` is the Kafka event it serves: the context of its table writes, and what
    `is_current` is asked of (None: none). A queued job is this one object: with effects, about
    1,250 jobs wait behind orders in a call, and every young collection walks them. As a tuple
    of the event, a partial of the job and a partial of its ack (with their argument tuples and
    bound methods) each was eight objects; an event's job (`streams.processor.EventJob`) and its
    `Source` are two: young collections took 30% less time (bench/RESULTS.md, 2026-12-05 18:52)."""

    def __init__(self, event: Any) -> None:
        self.event = event
        self.resumed: _Resumed | None = None  # begun eagerly, suspended where it waits

    def run(self) -> Awaitable[None]:
        raise NotImplementedError

    def done(self) -> None:
        raise NotImplementedError


class CallWork(Work):
    """A job and its `done` given as callables (`Lanes.submit`)."""

    def __init__(self, event: Any, job: Job, done: Callable[[], None]) -> None:
        super().__init__(event)
        self._job = job
        self._done = done

    def run(self) -> Awaitable[None]:
        return self._job()

    def done(self) -> None:
        self._done()


class Lanes:
    """`submit(order_id, event, job, done)` runs `job` after the order's earlier jobs, in a lane,
    then calls `done`.

    At most `in_flight` jobs are queued or running over all lanes; `submit` waits for room then.
    The bound is shared: an order waiting for an effect may queue more while the others go on.
    Every job in flight is an event the garbage collector walks, so the bound is small."""

    def __init__(self, lanes: int, in_flight: int = 2048,
                 on_error: Callable[[BaseException], None] | None = None,
                 is_current: Callable[[Any], bool] = lambda _event: True,
                 turn_budget_s: float = 0.0, eager: bool = True,
                 step_budget_s: float = STEP_BUDGET_S,
                 read_answers: Callable[[], object] | None = None) -> None:
        self.size = lanes
        self.share = TurnShare(turn_budget_s)
        self.eager = eager  # start a job at once when a lane is free (see the module docstring)
        self.started_eagerly = 0  # jobs started in the caller's step (finished there, or handed on)
        self._orders: dict[str, deque[Work]] = {}  # every order with work: its jobs not yet begun
        self._ready: deque[str] = deque()  # orders with work that no lane carries yet, oldest first
        self._free = lanes  # lanes carrying no order
        self._idle: deque[asyncio.Future[None]] = deque()  # free lanes' tasks waiting for an order
        self._queued = 0
        self._room = Room(in_flight)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._step_budget_s = step_budget_s  # see the module docstring
        self._turns = TurnShare(0.0)  # tells a lane's steps apart
        self._on_error = on_error
        self._is_current = is_current  # False for an event fetched before the last rebalance
        self._read_answers = read_answers  # see the module docstring
        self._answers_read_at = 0.0

    def start(self) -> None:
        if not self._tasks:
            self._loop = asyncio.get_running_loop()
            self._tasks = [asyncio.create_task(self._run(), name=f"lane-{i}") for i in range(self.size)]

    async def submit(self, order_id: str, event: Any, job: Job, done: Callable[[], None]) -> None:
        """`submit_work` of `job()` for `event`, then `done()`."""
        await self.submit_work(order_id, CallWork(event, job, done))

    async def submit_work(self, order_id: str, work: Work) -> None:
        """Run the work now if its order has no work and a lane is free (eager), else queue it
        behind the order's jobs; waits only while `in_flight` jobs are queued or running
        (backpressure on the partitions)."""
        self.start()
        await self._room.take()
        jobs = self._orders.get(order_id)
        if jobs is not None:  # the order has work: behind it
            jobs.append(work)
            self._queued += 1
        elif self.eager and self._free > len(self._ready) and not self.share.spent():
            self._start_eagerly(order_id, work)
        else:
            self._orders[order_id] = deque((work,))
            self._queued += 1
            self._hand_on(order_id)

    def _start_eagerly(self, order_id: str, work: Work) -> None:
        """Run the work in this step up to its first wait; if it waits, a free lane carries it on."""
        self.started_eagerly += 1
        if self._read_answers is not None:
            self._answers_due(time.perf_counter())
        set_current(work.event)
        coroutine = work.run()
        try:
            waiting_for = coroutine.send(None)  # type: ignore[attr-defined]
        except StopIteration:
            self._finish(work, None)
            return
        except asyncio.CancelledError:
            self._room.give()
            raise
        except BaseException as exc:
            self._finish(work, exc)
            return
        work.resumed = _Resumed(coroutine, waiting_for)
        self._orders[order_id] = deque((work,))
        self._queued += 1
        self._hand_on(order_id)

    def _hand_on(self, order_id: str) -> None:
        """The order has work and no lane: the next free lane takes it."""
        self._ready.append(order_id)
        self._wake_one()

    def _wake_one(self) -> None:
        while self._idle:
            waiter = self._idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _finish(self, work: Work, error: BaseException | None) -> None:
        """A job ended: ack it when it succeeded, never when it failed (left uncommitted)."""
        try:
            if error is None:
                work.done()
            else:
                log.error("lane job failed; its event stays uncommitted", exc_info=error)
                if self._on_error is not None:
                    self._on_error(error)
        finally:
            self._room.give()

    def _answers_due(self, now: float) -> None:
        """Read the effects' answers that came, when the last read is `READ_ANSWERS_EVERY_S` old.
        A read that fails is not asked again: the loop's own reads of the same sockets go on, and
        no lane or job is stopped by it."""
        read_answers = self._read_answers
        if read_answers is not None and now - self._answers_read_at >= READ_ANSWERS_EVERY_S:
            self._answers_read_at = now
            try:
                read_answers()
            except Exception:
                self._read_answers = None
                log.exception("reading the effects' answers between jobs failed; they are left "
                              "to the event loop's own reads from now on")

    def depth(self) -> int:
        """Jobs queued and not yet begun, over all orders."""
        return self._queued

    def busy(self) -> int:
        """Lanes carrying an order."""
        return self.size - self._free

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _take(self) -> str:
        """The oldest order with work that no lane carries, once there is one."""
        while not self._ready:
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            waiter: asyncio.Future[None] = loop.create_future()
            self._idle.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if not waiter.cancelled() and self._ready:
                    self._wake_one()  # woken for an order, then cancelled: another lane takes it
                raise
        return self._ready.popleft()

    async def _run(self) -> None:
        """A lane: takes an order and runs its jobs in order until it has none, then the next one;
        jobs back to back within one step of the task for at most `step_budget_s` (a step ends
        where a job waits, e.g. on an effect)."""
        turns, budget = self._turns, self._step_budget_s
        step_turn = -1
        step_started = 0.0
        while True:
            order_id = self._ready.popleft() if self._ready else await self._take()
            self._free -= 1
            jobs = self._orders[order_id]
            try:
                while jobs:
                    turn = turns.current()
                    now = time.perf_counter()
                    if turn != step_turn:  # a new step (after a wait or a yield)
                        step_turn, step_started = turn, now
                    elif budget <= 0 or now - step_started >= budget:
                        await asyncio.sleep(0)  # the step has run its budget: on in the next turn
                        continue
                    if self._read_answers is not None:
                        self._answers_due(now)
                    work = jobs.popleft()
                    self._queued -= 1
                    await self._run_one(work)
            finally:
                del self._orders[order_id]
                self._free += 1

    async def _run_one(self, work: Work) -> None:
        resumed = work.resumed  # begun eagerly: finished whatever came since
        event = work.event
        if resumed is None and event is not None and not self._is_current(event):
            self._room.give()  # fetched before a rebalance: Faust redelivers it, never ack it
            return
        while resumed is None and self.share.spent():
            await asyncio.sleep(0)  # this turn's budget is taken: the next turn
        try:
            set_current(event)
            if resumed is not None:
                work.resumed = None
                await resumed()
            else:
                await work.run()
        except asyncio.CancelledError:
            self._room.give()
            raise
        except BaseException as exc:  # never ack a job that failed: leave it uncommitted
            self._finish(work, exc)
        else:
            self._finish(work, None)


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
