"""Quix Streams doing orderflow's per-order work: the peer in bench/peers/run.py.

Runs in the peers virtualenv (Quix Streams pins its own confluent-kafka), with orderflow's pure
core on the path: the same `decode` (schemas/envelope.py) and the same state machine
(streams/core/machine.py, streams/core/lifecycle.py) as the worker. Per event: decode and validate, load the
order from Quix's RocksDB state (scoped by the message key, the client id, so an order lives in its
client's partition as in orderflow), drop a duplicate by event id, apply, park or reject it,
release parked events the order can now take, keep its history, and write the order back (Quix
writes the changelog and commits at each checkpoint). A transition with effects calls
`POST {PEERS_EFFECTS_URL}/{effect}` with an `Idempotency-Key`, synchronously, as a Quix callback
does. Dead letters go to PEERS_DLQ_TOPIC through Quix's producer.

Configured by environment: KAFKA_BOOTSTRAP, PEERS_GROUP, PEERS_TOPIC, PEERS_DLQ_TOPIC,
PEERS_STATE_DIR, PEERS_EFFECTS_URL (optional). Stopped with SIGTERM (Quix stops at a checkpoint).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from quixstreams import Application, State  # noqa: E402

from schemas.envelope import decode  # noqa: E402
from streams.core.lifecycle import DEFAULT as LIFECYCLE  # noqa: E402
from streams.core.machine import Limits, Verdict, apply, classify, new_order, park, reject, take_parked  # noqa: E402
from streams.errors import InvalidEvent  # noqa: E402

LIMITS = Limits()
EFFECTS_URL = os.environ.get("PEERS_EFFECTS_URL", "").rstrip("/")
DLQ_TOPIC = os.environ["PEERS_DLQ_TOPIC"]
session = requests.Session()

app = Application(
    broker_address=os.environ["KAFKA_BOOTSTRAP"],
    consumer_group=os.environ["PEERS_GROUP"],
    auto_offset_reset="earliest",
    commit_interval=0.5,
    state_dir=os.environ["PEERS_STATE_DIR"],
    loglevel="WARNING",
)
events = app.topic(os.environ["PEERS_TOPIC"], key_deserializer="bytes", value_deserializer="bytes")
producer = app.get_producer()


def call_effects(event: dict[str, Any], effects: tuple[str, ...]) -> None:
    for effect in effects:
        body = {k: event[k] for k in ("order_id", "client_id", "event_id", "type")}
        session.post(f"{EFFECTS_URL}/{effect}", json=body, timeout=10,
                     headers={"Idempotency-Key": event["event_id"]}).raise_for_status()


def dead_letter(value: bytes, kind: str, reason: str) -> None:
    producer.produce(topic=DLQ_TOPIC, value=json.dumps(
        {"kind": kind, "reason": reason, "original": value.decode("utf-8", "replace")}).encode())


def handle(value: bytes, state: State) -> None:
    try:
        event = decode(value, None, LIFECYCLE.event_types)
    except InvalidEvent as exc:
        dead_letter(value, "invalid_event", str(exc))
        return
    now = time.time()
    key = f"o:{event['order_id']}"
    order = state.get(key) or new_order(event, now)
    verdict, row = classify(order, event, LIFECYCLE, LIMITS)
    if verdict is Verdict.DUPLICATE:
        return
    if verdict is Verdict.APPLY and row is not None:
        if EFFECTS_URL and row.effects:
            call_effects(event, row.effects)
        order = apply(order, event, row, now, LIMITS)
        while (taken := take_parked(order, LIFECYCLE)) is not None:
            order, entry, parked_verdict = taken
            parked = entry["event"]
            parked_row = LIFECYCLE.step(order["status"], parked["type"])
            if parked_verdict is Verdict.APPLY and parked_row is not None:
                if EFFECTS_URL and parked_row.effects:
                    call_effects(parked, parked_row.effects)
                order = apply(order, parked, parked_row, now, LIMITS)
            else:
                order = reject(order, parked, now, "impossible", LIMITS)
                dead_letter(json.dumps(parked).encode(), "rejected", "impossible")
    elif verdict is Verdict.PARK:
        order = park(order, event, now)
    elif verdict is Verdict.REJECT:
        order = reject(order, event, now, "impossible", LIMITS)
        dead_letter(value, "rejected", "impossible")
    else:
        dead_letter(value, "park_full", "park full")
        return
    state.set(key, order)


app.dataframe(events).update(handle, stateful=True)

if __name__ == "__main__":
    app.run()
