"""The starved-partition guard: a stream partition Faust took out of its fetch set and never put
back (under queue pressure, or paused by a recovery that is over) is fetched again once the
agent's queue has drained; nothing is touched during a rebalance."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from streams.engine.flow import refetch_starved


class TP(tuple):  # type: ignore[type-arg]
    @property
    def topic(self) -> str:
        return str(self[0])

    @property
    def partition(self) -> int:
        return int(self[1])


def app_with(active: set[Any], paused: set[Any], buffered: set[Any], assigned: set[Any],
             rebalancing: bool = False) -> Any:
    consumer = SimpleNamespace(_get_active_partitions=lambda: active, _paused_partitions=paused,
                               _buffered_partitions=buffered, assignment=lambda: assigned)
    recovery = SimpleNamespace(completed=SimpleNamespace(is_set=lambda: True))
    return SimpleNamespace(consumer=consumer, rebalancing=rebalancing, in_recovery=False,
                           tables=SimpleNamespace(recovery=recovery),
                           flow_control=SimpleNamespace(is_active=lambda: True))


def queue(size: int) -> Any:
    return SimpleNamespace(qsize=lambda: size, pressure_drop_size=1638)


def test_a_starved_partition_is_fetched_again_once_the_queue_drained() -> None:
    p0, p1, p2, changelog = TP(("events", 0)), TP(("events", 1)), TP(("events", 2)), TP(("cl", 0))
    active, buffered = {p1}, {p0}
    app = app_with(active, paused={p2}, buffered=buffered, assigned={p0, p1, p2, changelog})
    assert refetch_starved(app, queue(5000), ["events"]) == []  # still under pressure: wait
    assert sorted(refetch_starved(app, queue(0), ["events"])) == [p0, p2]  # recovery is over
    assert active == {p0, p1, p2} and buffered == set()


def test_nothing_is_touched_during_a_rebalance() -> None:
    p0 = TP(("events", 0))
    active: set[Any] = set()
    app = app_with(active, paused=set(), buffered=set(), assigned={p0}, rebalancing=True)
    assert refetch_starved(app, queue(0), ["events"]) == [] and active == set()
