"""Lanes: one order's jobs in order, other orders meanwhile, and a backlog that shares the loop."""

from __future__ import annotations

import asyncio
import itertools

from streams.engine.stalls import LoopTurn
from streams.lanes import Lanes, lane_of


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


def test_a_slow_order_holds_up_only_its_own_lane() -> None:
    finished: list[str] = []
    slow_order = "slow"
    fast_order = next(f"o{n}" for n in range(100) if lane_of(f"o{n}", 8) != lane_of(slow_order, 8))

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


def test_a_lane_with_a_backlog_lets_the_loop_turn_between_its_jobs() -> None:
    """Jobs that await nothing (no effect) must not run back to back in one step: a web request
    waiting for its turn would wait for the whole backlog."""
    turns_seen: list[int] = []

    async def main() -> None:
        lanes = Lanes(1)
        counter = TurnCounter()
        done = asyncio.Event()
        for n in range(100):
            async def job() -> None:
                turns_seen.append(counter.turns)
            await lanes.submit("o1", None, job, done.set if n == 99 else lambda: None)
        await done.wait()
        counter.stop()
        await lanes.stop()

    asyncio.run(main())
    assert len(turns_seen) == 100
    # the other task ran between every two jobs
    assert all(later > earlier for earlier, later in itertools.pairwise(turns_seen))


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
