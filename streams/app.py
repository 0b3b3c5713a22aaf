"""The Faust app: settings, topics and tables. Wiring only; the logic lives in its own modules.

Run workers with `faust -A streams.app worker -l info --web-port 6066`.
"""

from __future__ import annotations

import gc
import os
import socket
import ssl
from typing import Any

import faust

from streams.config import Settings
from streams.core.lifecycle import load
from streams.engine import require_faust_version
from streams.engine.recovery import table_manager
from streams.engine.rocksdb import register as register_rocksdb
from streams.engine.supervision import AgentState
from streams.engine.transport import EngineApp, RawBytes
from streams.kafka_clients import client_config

require_faust_version()  # before anything of Faust's is built: the engine follows one version
settings = Settings.from_env()
lifecycle = load(settings.lifecycle_file or None)

if os.environ.get("ORDERFLOW_EVENT_LOOP", "uvloop") == "uvloop":
    # Faust's stream costs several loop cycles per event; uvloop makes each cheaper (bench/RESULTS.md).
    # Set before the worker creates its loop, so `faust -A streams.app worker` runs on it.
    import asyncio

    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


if settings.gc_threshold is not None:
    # Fewer collections of a large, long-lived heap; set at import, before the worker starts.
    gc.set_threshold(*settings.gc_threshold)


def _credentials(s: Settings) -> faust.SASLCredentials | faust.SSLCredentials | None:
    if s.security_protocol == "PLAINTEXT":
        return None
    context = ssl.create_default_context(cafile=s.ssl_cafile or None)
    if s.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=s.sasl_username, password=s.sasl_password, mechanism=s.sasl_mechanism or "PLAIN",
            ssl_context=context if s.security_protocol == "SASL_SSL" else None,
        )
    return faust.SSLCredentials(context)


class App(EngineApp):
    """Faust's app on our transport (streams/engine/transport.py): Faust's aiokafka one, minus its
    per-message task overhead."""

    #: whether the order agent runs (read by /ready and by the bounded shutdown)
    agent_state: AgentState = AgentState()
    #: how long a stop waits for events in flight (ORDERFLOW_SHUTDOWN_TIMEOUT_S)
    shutdown_timeout_s: float = settings.shutdown_timeout_s
    #: how long a fetch may wait to gather records while events flow (ORDERFLOW_FETCH_GATHER_MS)
    fetch_gather_ms: int = settings.fetch_gather_ms


app = App(
    settings.app_id,
    # The agent and the views register themselves when imported; Faust imports them when a worker
    # starts (before its `on_worker_init`), so this module imports neither: no import circle.
    origin="streams.app",
    autodiscover=["agents.orders", "streams.web.views"],
    broker=",".join(f"kafka://{b}" for b in settings.bootstrap.split(",")),
    broker_credentials=_credentials(settings),
    store=register_rocksdb(settings.rocksdb_memory_mb),
    # a cold start reads its changelogs in bulk (streams/engine/recovery.py)
    TableManager=table_manager(client_config(settings)) if settings.bulk_recovery else None,
    datadir=str(settings.state_dir),
    topic_partitions=settings.partitions,
    topic_replication_factor=settings.replication,
    topic_allow_declare=True,
    web_host=os.environ.get("ORDERFLOW_WEB_HOST", socket.gethostname()),
    producer_acks=-1,
    stream_wait_empty=True,
    consumer_auto_offset_reset="earliest",
    table_standby_replicas=int(os.environ.get("ORDERFLOW_STANDBY_REPLICAS", "0")),
    # Faust's default: acked offsets are committed every ORDERFLOW_COMMIT_INTERVAL_S, or sooner
    # after this many acks (1,000 was 15 commits a second at full speed, each walking every event
    # in flight for the in-flight floor, streams/engine/transport.py)
    broker_commit_every=10_000,
    # At most this many fetched records are decoded per step, partitions served in turn
    # (streams/engine/transport.py): unbounded, a backlog was decoded 300,000 records at a time.
    broker_max_poll_records=settings.max_poll_records,
    broker_commit_interval=float(os.environ.get("ORDERFLOW_COMMIT_INTERVAL_S", "2.8")),
    # How soon the group notices a dead worker and hands its partitions to the others.
    broker_session_timeout=float(os.environ.get("ORDERFLOW_SESSION_TIMEOUT_S", "30")),
    broker_heartbeat_interval=float(os.environ.get("ORDERFLOW_HEARTBEAT_S", "3")),
    web_cors_options=None,
)

# Both inputs are raw bytes: the agent decodes and validates itself, so a bad message becomes a
# dead letter instead of a crash inside Faust's deserializer.
inputs = app.topic(settings.events_topic, settings.retry_topic,
                   schema=RawBytes(key_type=bytes, value_type=bytes))
# ... delivered to the agent a fetched batch at a time (streams/engine/delivery.py)
inbox = app.deliver_in_batches({settings.events_topic, settings.retry_topic})
retry_topic = app.topic(settings.retry_topic, key_type=bytes, value_type=bytes,
                        key_serializer="raw", value_serializer="raw")
dlq_topic = app.topic(settings.dlq_topic, key_type=bytes, value_type=bytes,
                      key_serializer="raw", value_serializer="raw")

# Every table's changelog is compacted soon after it is written: Kafka compacts only closed
# segments, and its defaults (a segment rolls at 1 GB or 7 days) left every version of every order
# for a cold recovery to read. Recovery applies changelog records in large batches.
CHANGELOG: dict[str, Any] = {
    "extra_topic_configs": {"segment.ms": str(10 * 60 * 1000), "segment.bytes": str(64 * 1024 * 1024),
                            "min.cleanable.dirty.ratio": "0.1"},
    "recovery_buffer_size": 10_000,
}

orders_table = app.Table(
    "orders",
    key_type=str,
    partitions=settings.partitions,
    **CHANGELOG,
)

# Ordered entries of the orders (due times, a client's orders, stuck orders; streams/index.py),
# each in its order's partition.
index_table = app.Table(
    "order-index",
    key_type=str,
    partitions=settings.partitions,
    **CHANGELOG,
)

# order_id -> a small marker of a removed finished order (streams/closed.py), in its partition.
closed_table = app.Table(
    "closed-orders",
    key_type=str,
    partitions=settings.partitions,
    **CHANGELOG,
)

# Per-partition counters behind /stats, written by each partition's tick (see streams/core/stats.py).
stats_table = app.Table(
    "partition-stats",
    key_type=str,
    partitions=settings.partitions,
    **CHANGELOG,
)
