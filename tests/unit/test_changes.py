"""Reading the change feed: repeats after a crash are dropped by (order, version)."""

from __future__ import annotations

from streams.changes import new_versions


def test_a_redone_stretch_of_an_order_is_shown_once() -> None:
    # worker killed after sending o1 v2 and v3 and before committing: the survivor sends them again
    topic = [("o1", 1), ("o2", 1), ("o1", 2), ("o1", 3), ("o1", 2), ("o1", 3), ("o1", 4), ("o2", 2)]
    records = [{"order_id": o, "version": v} for o, v in topic]
    shown = [(r["order_id"], r["version"]) for r in new_versions(iter(records))]
    assert shown == [("o1", 1), ("o2", 1), ("o1", 2), ("o1", 3), ("o1", 4), ("o2", 2)]
