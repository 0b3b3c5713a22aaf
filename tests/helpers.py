"""Test helpers that read topics back and make events."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition


def make_event(order_id: str, kind: str, client_id: str = "client-1", **extra: Any) -> dict[str, Any]:
    """A valid envelope with a fresh event id."""
    return {
        "event_id": extra.pop("event_id", uuid.uuid4().hex),
        "order_id": order_id,
        "client_id": client_id,
        "type": kind,
        "occurred_at": "2026-11-22T10:00:00Z",
        "schema_version": 1,
        **extra,
    }


def consume_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 30.0) -> list[Any]:
    """Read `topic` from the beginning until `expected` messages came or the time ran out."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"reader-{uuid.uuid4().hex}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })
    meta = consumer.list_topics(topic, timeout=10).topics[topic]
    consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
    messages: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(messages) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            messages.append(msg)
    finally:
        consumer.close()
    return messages


def values(messages: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(m.value()) for m in messages]


def committed_and_end(bootstrap: str, group_id: str, topic: str, partition: int = 0) -> tuple[int, int]:
    """(the group's committed offset, the log end offset) of one partition (-1: nothing committed)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group_id,
                         "enable.auto.commit": False})
    try:
        [position] = consumer.committed([TopicPartition(topic, partition)], timeout=10)
        return position.offset, consumer.get_watermark_offsets(position, timeout=10)[1]
    finally:
        consumer.close()


def uncommitted(bootstrap: str, group_id: str, topic: str) -> dict[int, int]:
    """Per partition of `topic`, how many messages lie past the group's committed offset."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group_id,
                         "enable.auto.commit": False})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        committed = consumer.committed([TopicPartition(topic, p) for p in meta.partitions], timeout=10)
        lag = {}
        for position in committed:
            low, high = consumer.get_watermark_offsets(position, timeout=10)
            lag[position.partition] = high - (position.offset if position.offset >= 0 else low)
        return lag
    finally:
        consumer.close()


def apt_install(package: str) -> None:
    """apt-get install a Debian package (as root, or with password-less sudo); fail the test if
    that is not possible, never skip it."""
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for step in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
        done = subprocess.run([*sudo, *step], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            pytest.fail(f"could not install {package} ({' '.join(step)}): {done.stderr.strip()[-300:]}",
                        pytrace=False)


def tell(request: pytest.FixtureRequest, text: str) -> None:
    """A line on the user's terminal from inside a fixture (pytest captures the output there)."""
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if capture is None or reporter is None:
        print(text)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(text)


ROOT = Path(__file__).resolve().parents[1]


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh interpreter with the project on its path and no broker to reach: what a
    module does at import and at a worker's start, without the test process's own imports."""
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "KAFKA_BOOTSTRAP": "127.0.0.1:1"})
