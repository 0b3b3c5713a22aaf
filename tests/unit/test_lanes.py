"""Lanes: one order's jobs in order, other orders meanwhile in any free lane, and a backlog that
shares the loop."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from streams.core.stats import PartitionStats
from streams.engine.stalls import LoopTurn
from streams.lanes import Lanes, Room
from streams.web.metrics import Metrics


def test_one_orders_jobs_run_in_submission_order_and_each_is_acked() -> None:
    ran: list[int] = []
    acked: list[int] = []

    async def main() -> None:
        lanes = Lanes(4)
        for n in range(20):
            async def job(n: int = n) -> None:
                await asyncio.sleep(0.001 if n % 3 == 0 else 0)
                ran.append(n)
            await lanes.submit("o1", None, job, lambda n=n: acked.append(n))
        while len(acked) < 20:
            await asyncio.sleep(0.001)
        await lanes.stop()

    asyncio.run(main())
    assert ran == list(range(20))
    assert acked == list(range(20))


def test_a_slow_order_holds_up_no_other_order() -> None:
    finished: list[str] = []
    slow_order = "slow"
    fast_order = "fast"

    async def main() -> None:
        lanes = Lanes(8)
        release = asyncio.Event()

        async def slow() -> None:
            await release.wait()
            finished.append(slow_order)

        async def fast() -> None:
            finished.append(fast_order)

        await lanes.submit(slow_order, None, slow, lambda: None)
        await lanes.submit(fast_order, None, fast, lambda: None)
        for _ in range(50):
            await asyncio.sleep(0)
        assert finished == [fast_order]
        release.set()
        while len(finished) < 2:
            await asyncio.sleep(0.001)
        await lanes.stop()

    asyncio.run(main())
    assert finished == [fast_order, slow_order]


def test_orders_wait_only_while_every_lane_carries_another_order() -> None:
    """Three orders wait for their effects in three of four lanes; forty other orders, whatever
    their ids, go through the fourth meanwhile, each in order (with lanes picked by a hash of the
    order id, those hashed to a waiting order's lane waited for it)."""
    ran: dict[str, list[int]] = {}

    async def main() -> None:
        lanes = Lanes(4)
        release = asyncio.Event()

        async def slow() -> None:
            await release.wait()

        for n in range(3):
            await lanes.submit(f"slow{n}", None, slow, lambda: None)
        finished = asyncio.Event()
        for step in range(2):
            for n in range(40):
                async def job(order: str = f"o{n}", step: int = step) -> None:
                    await asyncio.sleep(0)  # waits: needs a lane, as an effect call does
                    ran.setdefault(order, []).append(step)
                last = step == 1 and n == 39
                await lanes.submit(f"o{n}", None, job, finished.set if last else lambda: None)
        await asyncio.wait_for(finished.wait(), 5)
        assert lanes.busy() == 3  # the slow orders still hold theirs, and /metrics says so
        metrics = Metrics(PartitionStats(), lanes.depth, dict, lanes_busy=lanes.busy)
        assert "orderflow_lanes_busy 3.0" in metrics.text().decode().splitlines()
        release.set()
        await lanes.stop()

    asyncio.run(main())
    assert len(ran) == 40 and all(steps == [0, 1] for steps in ran.values())


def test_no_more_orders_wait_at_once_than_there_are_lanes() -> None:
    """Ten orders each call an effect; four lanes carry four of them at a time, and each waiting
    order is taken, oldest first, by the first lane that frees."""
    waiting = 0
    most_waiting = 0
    began: list[str] = []

    async def main() -> None:
        nonlocal waiting, most_waiting
        lanes = Lanes(4)
        finished = Countdown(10)

        for n in range(10):
            async def effect(order: str = f"o{n}") -> None:
                nonlocal waiting, most_waiting
                began.append(order)
                waiting += 1
                most_waiting = max(most_waiting, waiting)
                await asyncio.sleep(0.01)
                waiting -= 1
            await lanes.submit(f"o{n}", None, effect, finished.one_done)
        await asyncio.wait_for(finished.wait(), 5)
        await lanes.stop()

    asyncio.run(main())
    assert most_waiting == 4
    assert began == [f"o{n}" for n in range(10)]


class Countdown(asyncio.Event):
    """Set once `one_done` has been called `count` times (each lane job's ack calls it once)."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.left = count

    def one_done(self) -> None:
        self.left -= 1
        if self.left == 0:
            self.set()


class TurnCounter:
    """A task that counts the event loop's turns (one step per turn) while it runs."""

    def __init__(self) -> None:
        self.turns = 0
        self._task = asyncio.create_task(self._count())

    async def _count(self) -> None:
        while True:
            self.turns += 1
            await asyncio.sleep(0)

    def stop(self) -> None:
        self._task.cancel()


def test_a_lane_with_a_backlog_lets_the_loop_turn_once_its_step_has_run_its_budget() -> None:
    """Queued jobs that await nothing (no effect) must not run back to back for long: a web
    request waiting for its turn would wait for the whole backlog. A lane runs them together only
    for its step's budget (here 2 ms): jobs of 1 ms let the loop turn at least every third job,
    jobs of nothing run many to a turn, and a budget of 0 runs one a turn. (Jobs queue when their
    lane is busy; `eager=False` queues every one, as a backlog behind a waiting job is.)"""

    async def main(job_s: float, step_budget_s: float) -> list[int]:
        turns_seen: list[int] = []
        lanes = Lanes(1, eager=False, step_budget_s=step_budget_s)
        counter = TurnCounter()
        done = asyncio.Event()
        for n in range(100):
            async def job() -> None:
                turns_seen.append(counter.turns)
                _busy(job_s)
            await lanes.submit("o1", None, job, done.set if n == 99 else lambda: None)
        await done.wait()
        counter.stop()
        await lanes.stop()
        return turns_seen

    slow = asyncio.run(main(0.001, 0.002))
    assert len(slow) == 100
    assert all(later > earlier for earlier, later in zip(slow, slow[3:], strict=False)), \
        "four jobs of 1 ms ran in one step of a 2 ms budget"
    quick = asyncio.run(main(0.0, 0.002))
    assert len(set(quick)) < 50, "jobs that cost nothing ran one to a turn"
    strict = asyncio.run(main(0.0, 0.0))
    assert all(later > earlier for earlier, later in itertools.pairwise(strict))


def test_a_lane_runs_its_backlog_on_in_a_turn_that_others_made_long() -> None:
    """The budget is the lane's step's, not the turn's: behind an answered effect the rest of its
    order runs at once even when the turn has already run long (other lanes, the agent, a flush
    slice). Here another task holds every turn for 30 ms, longer than the lane's budget (20 ms);
    the lane's ten queued jobs, which cost nothing, still run in one step, not one a turn."""

    async def main() -> list[int]:
        turns_seen: list[int] = []
        counter = TurnCounter()
        running = True

        async def hog() -> None:
            while running:
                _busy(0.03)
                await asyncio.sleep(0)

        hogging = asyncio.create_task(hog())
        await asyncio.sleep(0)
        lanes = Lanes(1, eager=False, step_budget_s=0.02)
        done = asyncio.Event()
        for n in range(10):
            async def job() -> None:
                turns_seen.append(counter.turns)
            await lanes.submit("o1", None, job, done.set if n == 9 else lambda: None)
        await done.wait()
        running = False
        await hogging
        counter.stop()
        await lanes.stop()
        return turns_seen

    assert len(set(asyncio.run(main()))) == 1


def test_loop_turn_yields_only_once_its_budget_is_spent() -> None:
    async def main() -> tuple[int, int]:
        counter = TurnCounter()
        await asyncio.sleep(0)
        generous, before = LoopTurn(budget_s=60), counter.turns
        for _ in range(1000):
            await generous.share()
        without_yield = counter.turns - before
        strict, before = LoopTurn(budget_s=0), counter.turns
        for _ in range(10):
            await strict.share()
        with_yield = counter.turns - before
        counter.stop()
        return without_yield, with_yield

    without_yield, with_yield = asyncio.run(main())
    assert without_yield == 0
    assert with_yield == 10


def test_loop_turn_yields_sooner_while_answers_are_awaited() -> None:
    awaited = [False]

    async def main() -> list[int]:
        counter = TurnCounter()
        await asyncio.sleep(0)
        turn = LoopTurn(budget_s=60, awaiting_budget_s=0, answers_awaited=lambda: awaited[0])
        turns = []
        for answers in (False, True, False):
            awaited[0], before = answers, counter.turns
            for _ in range(10):
                await turn.share()
            turns.append(counter.turns - before)
        counter.stop()
        return turns

    assert asyncio.run(main()) == [0, 10, 0]


def _busy(seconds: float) -> None:
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass


def test_lanes_with_backlogs_stop_starting_jobs_once_the_turn_has_run_its_budget() -> None:
    """Eight busy lanes, jobs of 1 ms, a turn's budget of 3 ms: a turn starts at most four jobs
    (without the budget, one per lane: eight), and every job still runs, each order's in order
    (queued jobs: `eager=False`, as behind waiting ones)."""
    ran: dict[str, list[int]] = {}
    per_turn: dict[int, int] = {}

    async def main(budget_s: float) -> None:
        lanes = Lanes(8, turn_budget_s=budget_s, eager=False, step_budget_s=0)  # one job a turn
        counter = TurnCounter()
        orders = [f"o{lane}" for lane in range(8)]
        finished = asyncio.Event()
        for step in range(5):
            for order in orders:
                async def job(order: str = order, step: int = step) -> None:
                    per_turn[counter.turns] = per_turn.get(counter.turns, 0) + 1
                    _busy(0.001)
                    ran.setdefault(order, []).append(step)
                last = step == 4 and order == orders[-1]
                await lanes.submit(order, None, job, finished.set if last else lambda: None)
        await finished.wait()
        counter.stop()
        await lanes.stop()

    asyncio.run(main(0.0))
    assert max(per_turn.values()) == 8  # the measure sees a turn's jobs
    ran.clear()
    per_turn.clear()
    asyncio.run(main(0.003))
    assert max(per_turn.values()) <= 4
    assert len(ran) == 8 and all(steps == [0, 1, 2, 3, 4] for steps in ran.values())


def test_jobs_waiting_for_effects_overlap_under_a_turn_budget() -> None:
    """The budget is on a turn's time: jobs that wait (an effect call) do not spend it, so all
    lanes wait at once."""
    waiting = 0
    most_waiting = 0

    async def main() -> None:
        nonlocal waiting, most_waiting
        lanes = Lanes(16, turn_budget_s=0.001)
        finished = Countdown(16)

        for lane in range(16):
            order = f"o{lane}"

            async def job() -> None:
                nonlocal waiting, most_waiting
                waiting += 1
                most_waiting = max(most_waiting, waiting)
                await asyncio.sleep(0.05)
                waiting -= 1
            await lanes.submit(order, None, job, finished.one_done)
        await finished.wait()
        await lanes.stop()

    asyncio.run(main())
    assert most_waiting == 16


def test_the_bound_on_jobs_in_flight_is_shared_by_the_lanes() -> None:
    """A lane whose order waits (an effect) may queue past any one lane's share while the other
    lanes go on; once `in_flight` jobs are queued or running, `submit` waits."""
    finished: list[str] = []

    async def main() -> None:
        lanes = Lanes(4, in_flight=4)
        release = asyncio.Event()
        slow = "slow"
        fast = "fast"

        def job(name: str, wait: bool) -> Any:
            async def run() -> None:
                if wait:
                    await release.wait()
                finished.append(name)
            return run

        for n in range(3):  # one waiting, two of its order queued behind it
            await lanes.submit(slow, None, job(f"slow{n}", True), lambda: None)
        await lanes.submit(fast, None, job("fast", False), lambda: None)
        for _ in range(10):
            await asyncio.sleep(0)
        assert finished == ["fast"]  # another order ran meanwhile, and its job left the bound
        await lanes.submit(slow, None, job("slow3", True), lambda: None)  # the 4th in flight
        fifth = asyncio.create_task(lanes.submit(fast, None, job("fast2", False), lambda: None))
        for _ in range(10):
            await asyncio.sleep(0)
        assert not fifth.done()  # the bound is reached: submit waits
        release.set()
        await fifth
        while len(finished) < 6:
            await asyncio.sleep(0.001)
        await lanes.stop()

    asyncio.run(main())
    assert finished[:1] == ["fast"] and sorted(finished[1:]) == ["fast2", "slow0", "slow1", "slow2", "slow3"]
    assert [name for name in finished if name.startswith("slow")] == ["slow0", "slow1", "slow2", "slow3"]


def test_a_job_of_an_idle_lane_that_never_waits_is_done_within_submit() -> None:
    """Eager start: no queue, no task wake-up, no turn of the loop for a job with nothing to wait
    for; its ack comes before `submit` returns."""
    acked: list[int] = []

    async def main() -> int:
        lanes = Lanes(4)
        for n in range(10):
            async def job() -> None:
                pass
            await lanes.submit(f"o{n}", None, job, lambda n=n: acked.append(n))
            assert acked[-1] == n
        await lanes.stop()
        return lanes.started_eagerly

    assert asyncio.run(main()) == 10


def test_a_job_that_waits_keeps_its_lane_and_later_jobs_of_its_order_queue_behind_it() -> None:
    """A job begun eagerly that waits (an effect call) is carried on by a lane: the next job of
    the same order waits for it, another order runs meanwhile, and each is acked once."""
    events: list[str] = []
    acked: list[str] = []
    other = "other"

    async def main() -> None:
        lanes = Lanes(8)
        release = asyncio.get_running_loop().create_future()

        async def effect() -> None:
            events.append("effect called")
            events.append(f"effect answered {await release}")

        async def after() -> None:
            events.append("next event of the order")

        async def elsewhere() -> None:
            events.append("another order")

        await lanes.submit("slow", None, effect, lambda: acked.append("effect"))
        for _ in range(5):
            await asyncio.sleep(0)  # the lane has taken the waiting job over: its queue is empty
        await lanes.submit("slow", None, after, lambda: acked.append("after"))
        await lanes.submit(other, None, elsewhere, lambda: acked.append("elsewhere"))
        for _ in range(20):
            await asyncio.sleep(0)
        assert events == ["effect called", "another order"] and acked == ["elsewhere"]
        release.set_result(200)
        while len(acked) < 3:
            await asyncio.sleep(0.001)
        await lanes.stop()

    asyncio.run(main())
    assert events == ["effect called", "another order", "effect answered 200", "next event of the order"]
    assert acked == ["elsewhere", "effect", "after"]


def test_a_job_handed_on_goes_on_in_the_first_turn_after_its_answer() -> None:
    """An effect's answer resumes the job waiting for it in the next turn of the loop, not two
    turns later: with effects, every turn an answer waits holds up its whole lane."""
    turns_after_answer: list[int] = []

    async def main() -> None:
        lanes = Lanes(8)
        answer = asyncio.get_running_loop().create_future()

        async def effect() -> None:
            await answer

        await lanes.submit("o1", None, effect, lambda: None)  # begun eagerly, waits: handed on
        for _ in range(5):
            await asyncio.sleep(0)  # the lane's task has taken it over and waits for the answer
        answer.set_result(200)
        for turn in range(1, 5):
            await asyncio.sleep(0)  # this task runs after everything the answer made ready
            if not lanes.busy():
                turns_after_answer.append(turn)
                break
        await lanes.stop()

    asyncio.run(main())
    assert turns_after_answer == [1]


def test_a_failing_job_is_never_acked_whether_it_fails_at_once_or_after_a_wait() -> None:
    errors: list[str] = []
    acked: list[str] = []

    async def main() -> None:
        lanes = Lanes(2, on_error=lambda exc: errors.append(str(exc)))

        async def at_once() -> None:
            raise ValueError("at once")

        async def after_a_wait() -> None:
            await asyncio.sleep(0.001)
            raise ValueError("after a wait")

        await lanes.submit("o1", None, at_once, lambda: acked.append("at once"))
        await lanes.submit("o1", None, after_a_wait, lambda: acked.append("after a wait"))
        while len(errors) < 2:
            await asyncio.sleep(0.001)
        await lanes.stop()

    asyncio.run(main())
    assert errors == ["at once", "after a wait"] and acked == []


def test_stopping_cancels_a_job_waiting_where_it_was_handed_on_and_frees_its_room() -> None:
    """The lane's cancellation reaches the job where it waits (its cleanup runs), as it would a task."""
    seen: list[str] = []

    async def main() -> None:
        lanes = Lanes(2, in_flight=1)

        async def waits_forever() -> None:
            try:
                await asyncio.get_running_loop().create_future()
            except asyncio.CancelledError:
                seen.append("cancelled where it waited")
                raise

        await lanes.submit("o1", None, waits_forever, lambda: seen.append("acked"))
        await asyncio.sleep(0)
        await lanes.stop()
        await asyncio.wait_for(lanes.submit("o2", None, _nothing, lambda: seen.append("room again")), 1)

    asyncio.run(main())
    assert seen == ["cancelled where it waited", "room again"]



def test_room_serves_its_waiting_callers_oldest_first() -> None:
    """As a semaphore: once its places are taken a caller waits, and a place given back goes to
    the caller that has waited longest, before any caller that comes later."""
    served: list[str] = []

    async def main() -> None:
        room = Room(1)
        await room.take()

        async def caller(name: str) -> None:
            await room.take()
            served.append(name)

        first = asyncio.create_task(caller("first"))
        second = asyncio.create_task(caller("second"))
        await asyncio.sleep(0)
        assert served == []
        room.give()
        late = asyncio.create_task(caller("late"))  # comes after the place was given: waits its turn
        await asyncio.sleep(0)
        assert served == ["first"]
        room.give()
        room.give()
        await asyncio.gather(first, second, late)

    asyncio.run(main())
    assert served == ["first", "second", "late"]


def test_a_caller_cancelled_after_it_was_given_a_place_passes_it_on() -> None:
    """No place is lost to a cancellation, whether it comes while the caller waits or after a place
    was handed to it: the places free and taken always add up."""
    async def main() -> None:
        room = Room(1)
        await room.take()
        cancelled_waiting = asyncio.create_task(room.take())
        handed_then_cancelled = asyncio.create_task(room.take())
        patient = asyncio.create_task(room.take())
        await asyncio.sleep(0)
        cancelled_waiting.cancel()
        await asyncio.sleep(0)
        room.give()  # to `handed_then_cancelled`, the oldest still waiting ...
        handed_then_cancelled.cancel()  # ... cancelled before it ran: the place goes on
        await asyncio.wait_for(patient, 1)
        assert room.free == 0
        room.give()
        assert room.free == 1

    asyncio.run(main())

async def _nothing() -> None:
    pass


def test_the_effects_answers_are_read_between_jobs_within_a_lanes_step() -> None:
    """The loop reads sockets only between its turns; a lane working through a backlog has the
    answers that came read every quarter millisecond of its work, inside its step, and not at every
    job (jobs of nothing cost a read no more often)."""

    async def main(job_s: float) -> tuple[list[tuple[int, int]], int]:
        reads: list[tuple[int, int]] = []  # (the loop's turn, jobs done) at each read
        done_jobs = [0]
        lanes = Lanes(1, eager=False, step_budget_s=0.002,
                      read_answers=lambda: reads.append((counter.turns, done_jobs[0])))
        counter = TurnCounter()
        done = asyncio.Event()
        for n in range(40):
            async def job() -> None:
                _busy(job_s)
                done_jobs[0] += 1
            await lanes.submit("o1", None, job, done.set if n == 39 else lambda: None)
        await done.wait()
        counter.stop()
        await lanes.stop()
        return reads, done_jobs[0]

    reads, jobs = asyncio.run(main(0.0001))  # 4 ms of work, steps of 2 ms
    assert jobs == 40
    assert len(reads) >= 8, "answers were read less often than every half millisecond of work"
    turns = [turn for turn, _ in reads]
    assert len(turns) > len(set(turns)), "answers were read only once a turn"
    assert [done for _, done in reads] == sorted(done for _, done in reads)
    quick_reads, _ = asyncio.run(main(0.0))
    assert len(quick_reads) < 40, "answers were read at every job however little time had passed"


def test_a_failing_read_of_the_answers_stops_no_lane_and_is_not_asked_again() -> None:
    calls: list[int] = []
    done: list[int] = []

    def read_answers() -> None:
        calls.append(1)
        raise RuntimeError("broken")

    async def main() -> None:
        lanes = Lanes(1, eager=False, read_answers=read_answers)
        for n in range(5):
            async def job() -> None:
                _busy(0.0003)
            await lanes.submit("o1", None, job, lambda n=n: done.append(n))
        while len(done) < 5:
            await asyncio.sleep(0.001)
        await lanes.stop()

    asyncio.run(main())
    assert done == [0, 1, 2, 3, 4]
    assert calls == [1]
