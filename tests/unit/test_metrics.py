"""The latency histogram counted by hand (streams.web.metrics.CountingHistogram) shows on /metrics
exactly what prometheus_client's own Histogram shows for the same observations."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from streams.web.metrics import LATENCY_BUCKETS, CountingHistogram

BOUNDS = st.sampled_from([*LATENCY_BUCKETS, 0.0, -1.0, 1e9])
VALUES = st.lists(st.one_of(BOUNDS, st.floats(-10, 1e4, allow_nan=False)), max_size=60)


def _samples(registry: CollectorRegistry) -> list[str]:
    return [line for line in generate_latest(registry).decode().splitlines()
            if line.startswith("latency_seconds_") and "_created" not in line]


@given(VALUES)
def test_it_exposes_what_prometheus_clients_histogram_exposes(values: list[float]) -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    counting = CountingHistogram("latency_seconds", "doc", LATENCY_BUCKETS)
    ours.register(counting)
    reference = Histogram("latency_seconds", "doc", buckets=LATENCY_BUCKETS, registry=theirs)
    for value in values:
        counting.observe(value)
        reference.observe(value)
    assert _samples(ours) == _samples(theirs)
    assert any(line.startswith('latency_seconds_bucket{le="+Inf"} ') for line in _samples(ours))
