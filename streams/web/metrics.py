"""Prometheus metrics (`GET /metrics`), read from the processor's own counters when scraped.

The processor counts once, in `streams.core.stats.PartitionStats`; this collector turns those counters
into Prometheus families at scrape time, so there is no second set of counters to keep in step.
Gauges that only the worker knows (lane queue depth, consumer lag, readiness, overdue timed work)
come from callables; the census gauges are this worker's share (its partitions): sum them over the
workers for the cluster (ops/grafana and ops/prometheus do).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from streams.core.stats import PartitionStats


def partition_lag(partitions: Iterable[Any], highwater: Callable[[Any], int | None],
                  committed: Callable[[Any], int]) -> dict[tuple[str, int], int]:
    """Per partition (topic, number): its high watermark minus its committed offset. A partition
    whose high watermark the consumer has not fetched yet (right after an assignment) is left out:
    `/stats` and `/metrics` answered 500 there, in every rebalance under load."""
    lag = {}
    for tp in partitions:
        high = highwater(tp)
        if high is not None:
            lag[(tp.topic, tp.partition)] = max(0, high - committed(tp))
    return lag

OVERDUE_S = 60.0  # timed work this late counts as overdue (a tick runs every second)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
LOOP_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)


class CountingHistogram(Collector):
    """A Prometheus histogram observed once per event on the event loop's thread: a bucket's count
    is one list slot found by bisection. prometheus_client's `Histogram.observe` (a lock per bucket
    and per sum, a loop over the bounds) took 2.3% of the worker's loop thread at full speed, as
    much as a fifth of the event's decoding; scrapes run on the same thread, so nothing is locked."""

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...]) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = tuple(sorted(buckets))
        self.counts = [0] * (len(self.bounds) + 1)  # the last: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # bucket `le`: value <= its bound
        self.sum += value

    def collect(self) -> Iterator[Metric]:
        cumulative, total = [], 0
        for bound, count in zip((*map(floatToGoString, self.bounds), "+Inf"), self.counts, strict=True):
            total += count
            cumulative.append((bound, total))
        yield HistogramMetricFamily(self.name, self.documentation, buckets=cumulative, sum_value=self.sum)


class _ProcessorCollector(Collector):
    def __init__(self, stats: PartitionStats, lane_depth: Callable[[], int],
                 lag: Callable[[], Mapping[tuple[str, int], int]], ready: Callable[[], bool],
                 overdue: Callable[[], int], lanes_busy: Callable[[], int]) -> None:
        self.stats = stats
        self.lane_depth = lane_depth
        self.lanes_busy = lanes_busy
        self.lag = lag
        self.ready = ready
        self.overdue = overdue

    def collect(self) -> Iterator[Metric]:
        totals = self.stats.totals
        events = CounterMetricFamily("orderflow_events", "Valid events handled, by type and outcome",
                                     labels=["type", "outcome"])
        letters = CounterMetricFamily("orderflow_dead_letters", "Dead letters sent, by reason kind",
                                      labels=["kind"])
        for key, value in sorted(totals.items()):
            parts = key.split(".")
            if parts[0] == "events" and len(parts) == 3:
                events.add_metric(parts[1:], value)
            elif parts[0] == "dead_letters" and len(parts) == 2:
                letters.add_metric(parts[1:], value)
        yield events
        yield letters
        for name, key, doc in (
            ("orderflow_invalid_events", "events.invalid", "Malformed events sent to the dead letters"),
            ("orderflow_duplicates", "duplicates", "Events dropped because their id was seen"),
            ("orderflow_parked", "parked", "Events parked because their order could not take them yet"),
            ("orderflow_retries_scheduled", "retries.scheduled", "Transient effect failures scheduled"),
            ("orderflow_retries_fired", "retries.fired", "Scheduled retries that were tried again"),
            ("orderflow_applied", "applied", "Transitions applied"),
        ):
            yield CounterMetricFamily(name, doc, value=totals[key])
        yield GaugeMetricFamily("orderflow_lane_queue_depth", "Jobs waiting in the order lanes",
                                value=self.lane_depth())
        yield GaugeMetricFamily("orderflow_lanes_busy", "Lanes carrying an order (at twice "
                                "ORDERFLOW_LANES, orders with work wait for a free lane)",
                                value=self.lanes_busy())
        lag = GaugeMetricFamily("orderflow_consumer_lag", "Messages not yet committed, per partition",
                                labels=["topic", "partition"])
        for (topic, partition), value in sorted(self.lag().items()):
            lag.add_metric([topic, str(partition)], value)
        yield lag
        # this worker's share of the census (its partitions); sum over workers for the cluster
        census: Counter[str] = Counter()
        for share in self.stats.census.values():
            census.update(share)
        orders = GaugeMetricFamily("orderflow_orders", "Orders held by this worker, by status",
                                   labels=["status"])
        for key, value in sorted(census.items()):
            if key.startswith("status."):
                orders.add_metric([key.split(".", 1)[1]], value)
        yield orders
        for name, key, doc in (
            ("orderflow_orders_stuck", "stuck", "Orders marked stuck by a status timeout"),
            ("orderflow_retries_pending", "retry_pending", "Orders waiting for a retry of an effect"),
            ("orderflow_parked_events", "parked", "Early events parked on their orders"),
        ):
            yield GaugeMetricFamily(name, doc, value=census[key])
        yield GaugeMetricFamily("orderflow_timed_work_overdue",
                                f"Timed work (retries, timeouts, removals) due over {OVERDUE_S:g} s ago "
                                "and not done (counted up to 1,000 per partition)", value=self.overdue())
        yield GaugeMetricFamily("orderflow_ready", "1 while the worker is ready (GET /ready)",
                                value=1 if self.ready() else 0)


class Metrics:
    """One registry per worker: the processor's counters, a latency histogram, the gauges."""

    def __init__(self, stats: PartitionStats, lane_depth: Callable[[], int],
                 lag: Callable[[], Mapping[tuple[str, int], int]],
                 ready: Callable[[], bool] = lambda: True, overdue: Callable[[], int] = lambda: 0,
                 lanes_busy: Callable[[], int] = lambda: 0) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_ProcessorCollector(stats, lane_depth, lag, ready, overdue, lanes_busy))
        self.latency = CountingHistogram(
            "orderflow_processing_latency_seconds",
            "From an event's occurred_at to its application", buckets=LATENCY_BUCKETS)
        self.registry.register(self.latency)
        self.loop_lag = Histogram(
            "orderflow_event_loop_lag_seconds",
            "How late the worker's event loop ran a 20 ms beat (what a request waits for its turn)",
            buckets=LOOP_LAG_BUCKETS, registry=self.registry,
        )

    def observe_latency(self, seconds: float) -> None:
        self.latency.observe(seconds)

    def observe_loop_lag(self, seconds: float) -> None:
        self.loop_lag.observe(seconds)

    def text(self) -> bytes:
        return generate_latest(self.registry)
