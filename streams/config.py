"""Settings from the environment, read and validated once, as one frozen object.

Every field names its environment variable and default; the README's configuration table mirrors this.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from streams.errors import ConfigError

N = TypeVar("N", int, float)


def _number(env: Mapping[str, str], name: str, default: N, minimum: N) -> N:
    """Read a number of `default`'s type (int or float); a bad or too small value is a ConfigError."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    kind = type(default)
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(
            f"{name}={raw!r} is not {'a whole number' if kind is int else 'a number'}") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in ("0", "1", "true", "false", "yes", "no"):
        raise ConfigError(f"{name} must be 1 or 0, not {raw!r}")
    return raw in ("1", "true", "yes")


def _gc_threshold(env: Mapping[str, str],
                  default: tuple[int, int, int] | None) -> tuple[int, int, int] | None:
    raw = env.get("ORDERFLOW_GC_THRESHOLD", "").strip()
    if not raw:
        return default
    if raw == "python":
        return None
    parts = raw.split(",")
    if len(parts) != 3 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(f"ORDERFLOW_GC_THRESHOLD={raw!r} must be three positive whole numbers "
                          "like 50000,20,100, or 'python'")
    young, middle, old = (int(p) for p in parts)
    return young, middle, old


@dataclass(frozen=True)
class Settings:
    """orderflow's configuration. Build it with `Settings.from_env()`."""

    #: KAFKA_BOOTSTRAP: comma-separated brokers.
    bootstrap: str = "127.0.0.1:9092"
    #: ORDERFLOW_PARTITIONS: partitions of every orderflow topic and changelog.
    partitions: int = 8
    #: ORDERFLOW_REPLICATION: replication factor of the topics orderflow creates.
    replication: int = 1
    #: ORDERFLOW_APP_ID: Faust app id (consumer group, changelog topic prefix).
    app_id: str = "orderflow"
    #: ORDERFLOW_EVENTS_TOPIC / ORDERFLOW_RETRY_TOPIC / ORDERFLOW_DLQ_TOPIC.
    events_topic: str = "orders.events"
    retry_topic: str = "orders.retry"
    dlq_topic: str = "orders.dlq"
    #: ORDERFLOW_CHANGES_TOPIC: the change feed, one record per applied transition ("": no feed).
    changes_topic: str = "orders.changes"
    #: ORDERFLOW_STATE_DIR: where the worker keeps its RocksDB tables.
    state_dir: Path = Path("./orderflow-state")
    #: ORDERFLOW_LIFECYCLE: path of a JSON transitions table; empty means the contract's default.
    lifecycle_file: str = ""
    #: ORDERFLOW_EFFECTS_URL: base URL of the effects service; empty means no effects are called.
    effects_url: str = ""
    #: ORDERFLOW_EFFECT_TIMEOUT_S: one effect call's total timeout.
    effect_timeout_s: float = 10.0
    #: ORDERFLOW_RETRY_BASE_S / _CAP_S / _MAX_ATTEMPTS: exponential backoff with full jitter.
    retry_base_s: float = 1.0
    retry_cap_s: float = 300.0
    retry_max_attempts: int = 8
    #: ORDERFLOW_LANES: effect calls out at once per worker; twice as many orders are worked on
    #: (one readied behind each call); 1 = strictly sequential. See streams/worker.py.
    lanes: int = 64
    #: ORDERFLOW_LANE_TURN_MS: how long a turn of the event loop may have run before a lane starts
    #: a job in it, the rest waiting for the next turn (0: no limit); see streams/lanes.py.
    lane_turn_ms: float = 0.0
    #: ORDERFLOW_ORDER_CACHE: orders kept in memory per worker as their JSON bytes (changed ones
    #: are kept besides, until written).
    order_cache: int = 20_000
    rocksdb_memory_mb: int = 256  # one block cache + write buffers shared by every table and partition
    stall_report_ms: int = 1000  # log the loop's stack when one step holds it this long (0: off)
    #: ORDERFLOW_MAX_POLL_RECORDS: fetched records taken from the consumer's thread at a time.
    #: Each take is a round trip to that thread: at 1,000 the agent found no list waiting after
    #: most of its lists, and a CPU-bound worker's loop idled 13-23% of a run; at 4,000, 9-14%
    #: (5-24% more events/s in five pairs of rounds; bench/RESULTS.md, 2026-12-05). The lists
    #: handed to the agent stay at 1,000 (`delivery.MAX_BATCH`), two at most waiting.
    max_poll_records: int = 4000
    #: ORDERFLOW_FETCH_GATHER_MS: while events flow, a fetch waits up to this long for more
    #: records (an idle worker's fetch still answers at once); 0: Faust's fetches, one round trip
    #: per handful of records (streams/engine/fetches.py).
    fetch_gather_ms: int = 10
    #: ORDERFLOW_BULK_RECOVERY: read changelogs in bulk when a table recovers (1) or only through
    #: Faust's per-record recovery (0).
    bulk_recovery: bool = True
    #: ORDERFLOW_GC_THRESHOLD: Python's garbage collector thresholds for the worker (gen0,gen1,gen2;
    #: Python's own are 700,10,10). A worker holds a large heap (the order cache, Faust's state):
    #: with Python's thresholds, full collections took 20-30% of its time (see README, Benchmarks).
    #: "python" keeps Python's.
    gc_threshold: tuple[int, int, int] | None = (50_000, 20, 100)
    #: ORDERFLOW_GC_PACE_MS: collect the young generation this often, by the clock (0: only by
    #: the thresholds above); see streams/collector.py.
    gc_pace_ms: int = 100
    #: ORDERFLOW_HISTORY_LIMIT: newest history entries kept on an order.
    history_limit: int = 50
    #: ORDERFLOW_PARK_LIMIT: parked events kept per order before the next one is dead-lettered.
    park_limit: int = 20
    #: ORDERFLOW_PARK_TIMEOUT_S: how long an early event may wait for its order.
    park_timeout_s: float = 300.0
    #: ORDERFLOW_IDEMPOTENCY_RETENTION_S: how long an event id is remembered (default 7 days).
    idempotency_retention_s: float = 7 * 24 * 3600.0
    #: ORDERFLOW_FINISHED_RETENTION_S: how long a finished order (final status, nothing parked or
    #: pending) is kept before it is removed (default 30 days; 0 keeps finished orders forever).
    finished_retention_s: float = 30 * 24 * 3600.0
    #: ORDERFLOW_SWEEP_INTERVAL_S: how often parked timeouts, due retries and expired ids are swept.
    sweep_interval_s: float = 1.0
    #: ORDERFLOW_ON_TERMINAL_FAILURE: what happens to events parked behind a failed one:
    #: "release" (apply them if the order can take them) or "dead_letter" (send them after it).
    on_terminal_failure: str = "release"
    #: ORDERFLOW_SHUTDOWN_TIMEOUT_S: how long a stopping worker waits for its events in flight to
    #: finish (they are flushed, acked and committed); what is left is handed back uncommitted.
    shutdown_timeout_s: float = 30.0
    #: ORDERFLOW_STUCK_AFTER_S: a worker in a rebalance or a table recovery for longer than this
    #: stops with exit 1, for its supervisor to restart it (above the longest cold recovery); 0: never.
    stuck_after_s: float = 600.0
    #: KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD,
    #: KAFKA_SSL_CAFILE: security for real clusters (PLAINTEXT by default).
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: str = field(default="", repr=False)
    ssl_cafile: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every setting from `env` (default: os.environ); raise ConfigError on a bad one."""
        e = os.environ if env is None else env
        settings = cls(
            bootstrap=e.get("KAFKA_BOOTSTRAP", cls.bootstrap),
            partitions=_number(e, "ORDERFLOW_PARTITIONS", cls.partitions, 1),
            replication=_number(e, "ORDERFLOW_REPLICATION", cls.replication, 1),
            app_id=e.get("ORDERFLOW_APP_ID", cls.app_id),
            events_topic=e.get("ORDERFLOW_EVENTS_TOPIC", cls.events_topic),
            retry_topic=e.get("ORDERFLOW_RETRY_TOPIC", cls.retry_topic),
            dlq_topic=e.get("ORDERFLOW_DLQ_TOPIC", cls.dlq_topic),
            changes_topic=e.get("ORDERFLOW_CHANGES_TOPIC", cls.changes_topic),
            state_dir=Path(e.get("ORDERFLOW_STATE_DIR", str(cls.state_dir))),
            lifecycle_file=e.get("ORDERFLOW_LIFECYCLE", cls.lifecycle_file),
            effects_url=e.get("ORDERFLOW_EFFECTS_URL", cls.effects_url).rstrip("/"),
            effect_timeout_s=_number(e, "ORDERFLOW_EFFECT_TIMEOUT_S", cls.effect_timeout_s, 0.001),
            retry_base_s=_number(e, "ORDERFLOW_RETRY_BASE_S", cls.retry_base_s, 0.0),
            retry_cap_s=_number(e, "ORDERFLOW_RETRY_CAP_S", cls.retry_cap_s, 0.0),
            retry_max_attempts=_number(e, "ORDERFLOW_RETRY_MAX_ATTEMPTS", cls.retry_max_attempts, 1),
            lanes=_number(e, "ORDERFLOW_LANES", cls.lanes, 1),
            lane_turn_ms=_number(e, "ORDERFLOW_LANE_TURN_MS", cls.lane_turn_ms, 0.0),
            order_cache=_number(e, "ORDERFLOW_ORDER_CACHE", cls.order_cache, 0),
            rocksdb_memory_mb=_number(e, "ORDERFLOW_ROCKSDB_MEMORY_MB", cls.rocksdb_memory_mb, 16),
            stall_report_ms=_number(e, "ORDERFLOW_STALL_REPORT_MS", cls.stall_report_ms, 0),
            max_poll_records=_number(e, "ORDERFLOW_MAX_POLL_RECORDS", cls.max_poll_records, 1),
            fetch_gather_ms=_number(e, "ORDERFLOW_FETCH_GATHER_MS", cls.fetch_gather_ms, 0),
            bulk_recovery=_flag(e, "ORDERFLOW_BULK_RECOVERY", cls.bulk_recovery),
            gc_threshold=_gc_threshold(e, cls.gc_threshold),
            gc_pace_ms=_number(e, "ORDERFLOW_GC_PACE_MS", cls.gc_pace_ms, 0),
            history_limit=_number(e, "ORDERFLOW_HISTORY_LIMIT", cls.history_limit, 1),
            park_limit=_number(e, "ORDERFLOW_PARK_LIMIT", cls.park_limit, 0),
            park_timeout_s=_number(e, "ORDERFLOW_PARK_TIMEOUT_S", cls.park_timeout_s, 0.0),
            idempotency_retention_s=_number(
                e, "ORDERFLOW_IDEMPOTENCY_RETENTION_S", cls.idempotency_retention_s, 0.0
            ),
            finished_retention_s=_number(
                e, "ORDERFLOW_FINISHED_RETENTION_S", cls.finished_retention_s, 0.0
            ),
            sweep_interval_s=_number(e, "ORDERFLOW_SWEEP_INTERVAL_S", cls.sweep_interval_s, 0.01),
            shutdown_timeout_s=_number(e, "ORDERFLOW_SHUTDOWN_TIMEOUT_S", cls.shutdown_timeout_s, 0.0),
            stuck_after_s=_number(e, "ORDERFLOW_STUCK_AFTER_S", cls.stuck_after_s, 0.0),
            on_terminal_failure=e.get("ORDERFLOW_ON_TERMINAL_FAILURE", cls.on_terminal_failure),
            security_protocol=e.get("KAFKA_SECURITY_PROTOCOL", cls.security_protocol).upper(),
            sasl_mechanism=e.get("KAFKA_SASL_MECHANISM", cls.sasl_mechanism),
            sasl_username=e.get("KAFKA_SASL_USERNAME", cls.sasl_username),
            sasl_password=e.get("KAFKA_SASL_PASSWORD", cls.sasl_password),
            ssl_cafile=e.get("KAFKA_SSL_CAFILE", cls.ssl_cafile),
        )
        if settings.on_terminal_failure not in ("release", "dead_letter"):
            raise ConfigError(
                "ORDERFLOW_ON_TERMINAL_FAILURE must be 'release' or 'dead_letter', "
                f"not {settings.on_terminal_failure!r}"
            )
        if settings.retry_cap_s < settings.retry_base_s:
            raise ConfigError("ORDERFLOW_RETRY_CAP_S must not be below ORDERFLOW_RETRY_BASE_S")
        return settings

    def librdkafka(self) -> dict[str, Any]:
        """Connection settings for confluent-kafka clients (producer, consumer, admin)."""
        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap}
        if self.security_protocol != "PLAINTEXT":
            conf["security.protocol"] = self.security_protocol
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
            conf["sasl.username"] = self.sasl_username
            conf["sasl.password"] = self.sasl_password
        if self.ssl_cafile:
            conf["ssl.ca.location"] = self.ssl_cafile
        return conf
