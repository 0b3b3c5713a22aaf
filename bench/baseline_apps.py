"""The two baselines the processor is measured against, as Faust apps (`faust -A bench.baseline_apps:bare`).

bare:  a Faust agent that only decodes each event (the floor of Faust's per-event cost).
table: a plain Faust agent keeping per-order state in a Faust Table the documented way
       (`table[key] = value` inside the stream: one changelog record per write).
"""

from __future__ import annotations

import json
import os
from typing import Any

import faust


def _app(name: str) -> faust.App:
    return faust.App(
        os.environ["ORDERFLOW_APP_ID"],
        broker=f"kafka://{os.environ['KAFKA_BOOTSTRAP']}",
        store="rocksdb://",
        datadir=os.environ["ORDERFLOW_STATE_DIR"],
        topic_partitions=int(os.environ["ORDERFLOW_PARTITIONS"]),
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=float(os.environ.get("ORDERFLOW_COMMIT_INTERVAL_S", "0.5")),
        web_port=int(os.environ.get("BENCH_WEB_PORT", "6066")),
    )


bare = _app("bare")
_bare_topic = bare.topic(os.environ["ORDERFLOW_EVENTS_TOPIC"], value_type=bytes,
                         value_serializer="raw", key_type=bytes, key_serializer="raw")


@bare.agent(_bare_topic)
async def decode_only(stream: Any) -> None:
    async for value in stream:
        json.loads(value)


table = _app("table")
_table_topic = table.topic(os.environ["ORDERFLOW_EVENTS_TOPIC"], value_type=bytes,
                           value_serializer="raw", key_type=bytes, key_serializer="raw")
_orders = table.Table("orders", default=dict)


@table.agent(_table_topic)
async def keep_state(stream: Any) -> None:
    async for value in stream:
        event = json.loads(value)
        order = _orders[event["order_id"]]
        seen = order.get("seen", [])
        if event["event_id"] in seen:
            continue
        _orders[event["order_id"]] = {"status": event["type"], "version": order.get("version", 0) + 1,
                                      "seen": [*seen, event["event_id"]]}
