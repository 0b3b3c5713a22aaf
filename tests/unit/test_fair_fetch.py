"""Bounded fetches serve every partition in turn (streams/engine/transport.py `served_last`):
aiokafka hands out fetched records starting with the partition fetched first each call."""

from __future__ import annotations

from collections import OrderedDict

from streams.engine.transport import served_last


def aiokafka_fetched_records(fetched: OrderedDict[str, list[int]], max_records: int) -> dict[str, list[int]]:
    """aiokafka 0.14's `Fetcher.fetched_records`: partitions in the map's order, up to max_records."""
    drained: dict[str, list[int]] = {}
    for tp in list(fetched):
        records, fetched[tp] = fetched[tp][:max_records], fetched[tp][max_records:]
        if not fetched[tp]:
            del fetched[tp]
        drained[tp] = records
        max_records -= len(records)
        if max_records == 0:
            break
    return drained


def calls_until_served(tp: str, rotate: bool, calls: int = 50) -> int | None:
    fetched = OrderedDict([("events-0", list(range(100_000))), ("events-1", list(range(100_000))),
                           ("retry-0", [1, 2, 3])])
    for n in range(1, calls + 1):
        served = aiokafka_fetched_records(fetched, max_records=2000)
        if tp in served:
            return n
        if rotate:
            served_last(fetched, served)
    return None


def test_a_partition_behind_a_backlog_is_served_within_a_round() -> None:
    assert calls_until_served("retry-0", rotate=False) is None  # aiokafka alone: starved
    assert calls_until_served("retry-0", rotate=True) == 3
    assert calls_until_served("events-1", rotate=True) == 2


def test_a_partition_no_longer_fetched_is_left_alone() -> None:
    fetched = OrderedDict([("a", [1]), ("b", [2])])
    served_last(fetched, {"gone": [0], "a": [1]})
    assert list(fetched) == ["b", "a"]
