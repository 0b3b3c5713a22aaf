"""The consumer lag behind `/stats` and `/metrics`: right after an assignment the consumer does not
know a partition's high watermark yet, and the views must answer all the same."""

from __future__ import annotations

from faust.types import TP

from streams.web.metrics import partition_lag


def test_lag_is_the_high_watermark_minus_the_committed_offset_and_an_unknown_one_is_left_out() -> None:
    known, fresh, behind = TP("events", 0), TP("events", 1), TP("retry", 2)
    highwater = {known: 120, fresh: None, behind: 5}
    committed = {known: 100, fresh: 0, behind: 7}  # a commit ahead of a stale watermark: no lag
    lag = partition_lag([known, fresh, behind], highwater.__getitem__, committed.__getitem__)
    assert lag == {("events", 0): 20, ("retry", 2): 0}
