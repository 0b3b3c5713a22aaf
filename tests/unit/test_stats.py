"""Counters that never go backwards: restored before anything is counted or reported, and reported
only as of their last delivered write."""

from __future__ import annotations

from typing import Any

from streams.core.stats import PartitionStats, merge


def test_counters_are_restored_before_counting_and_reported_once_durable() -> None:
    saved: dict[int, dict[str, Any]] = {3: {"counts": {"events": 100}}}
    stats = PartitionStats(load=saved.get)
    stats.count(3, "events")
    stats.count(3, "events")
    assert stats.local([3])["3"]["counts"] == {"events": 100}  # the durable count, not less
    record = stats.persisted(3)
    assert record["counts"] == {"events": 102}
    assert stats.local([3])["3"]["counts"] == {"events": 100}  # written, not delivered yet
    stats.flushed()
    assert stats.local([3])["3"]["counts"] == {"events": 102}


def test_a_decisions_counts_at_once_are_restored_first_and_count_like_one_at_a_time() -> None:
    saved: dict[int, dict[str, Any]] = {2: {"counts": {"events": 10, "applied": 4}}}
    at_once, one_by_one = PartitionStats(load=saved.get), PartitionStats(load=saved.get)
    counts = {"events": 2, "applied": 1, "events.paid.applied": 1}
    at_once.count_all(2, counts)
    for key, n in counts.items():
        one_by_one.count(2, key, n)
    assert at_once.persisted(2)["counts"] == one_by_one.persisted(2)["counts"] \
        == {"events": 12, "applied": 5, "events.paid.applied": 1}
    assert at_once.totals == one_by_one.totals


def test_a_partition_taken_over_reports_at_least_what_its_last_owner_wrote() -> None:
    table: dict[int, dict[str, Any]] = {}
    first = PartitionStats(load=table.get)
    for _ in range(5):
        first.count(1, "events")
    table[1] = first.persisted(1)
    first.flushed()
    shown_before = merge([{"worker": "a", "partitions": first.local([1])}], 1)["events"]["processed"]
    first.count(1, "events")  # counted, never written: the worker dies here
    second = PartitionStats(load=table.get)  # the new owner
    shown_after = merge([{"worker": "b", "partitions": second.local([1])}], 1)["events"]["processed"]
    assert shown_after >= shown_before == 5


def test_a_revoked_partition_is_restored_again_when_it_comes_back() -> None:
    table: dict[int, dict[str, Any]] = {0: {"counts": {"events": 7}}}
    stats = PartitionStats(load=table.get)
    stats.count(0, "events")
    table[0] = stats.persisted(0)
    stats.flushed()
    stats.forget(0)
    assert stats.local([0])["0"]["counts"] == {"events": 8}
