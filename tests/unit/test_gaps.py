"""Offsets Faust skipped are noticed (fetching them is tested on Kafka in tests/kafka/test_gaps.py)."""

from __future__ import annotations

import pytest

from streams.gaps import TP, GapGuard

EVENTS = ("events", 1)


class Guard(GapGuard):
    """A guard whose group has committed `committed` (or nothing) on every partition."""

    def __init__(self, committed: int | None = None) -> None:
        super().__init__({}, "group")
        self._committed = committed

    def committed(self, tp: TP, timeout_s: float = 10.0) -> int | None:
        return self._committed


async def _missing(guard: GapGuard, tp: TP, *offsets: int) -> list[list[int]]:
    return [list(await guard.missing(tp, offset)) for offset in offsets]


async def test_a_forward_jump_names_the_skipped_offsets_once() -> None:
    guard = Guard()
    assert await _missing(guard, EVENTS, 4, 5, 8, 9) == [[], [], [6, 7], []]
    assert await _missing(guard, ("events", 2), 100) == [[]], "each partition on its own"


async def test_going_back_is_a_redelivery_and_a_rebalance_starts_afresh() -> None:
    guard = Guard()
    assert await _missing(guard, EVENTS, 10, 11, 5, 6) == [[], [], [], []]
    guard.reset()
    assert await _missing(guard, EVENTS, 40) == [[]]


@pytest.mark.parametrize(("first", "skipped"), [(30, []), (29, []), (33, [30, 31, 32])])
async def test_after_a_rebalance_the_committed_offset_is_the_first_expected(
        first: int, skipped: list[int]) -> None:
    guard = Guard(committed=30)
    assert await _missing(guard, EVENTS, first) == [skipped]
