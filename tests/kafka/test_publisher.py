"""The publisher against the real broker: round trip, partitioning, the publish command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from aiokafka.partitioner import DefaultPartitioner

from streams.tools.publisher import Publisher
from streams.tools.topics import create_topics
from tests.conftest import SettingsFactory, settings_env
from tests.helpers import consume_all, make_event, values


def test_round_trip_keeps_events_intact_and_keyed_by_client(settings_factory: SettingsFactory) -> None:
    settings = settings_factory()
    create_topics(settings)
    sent = [make_event(f"o{i}", "created", client_id=f"c{i % 5}", note={"i": i}) for i in range(50)]
    report = Publisher(settings).publish(sent)
    assert report.ok and report.sent == 50

    got = consume_all(settings.bootstrap, settings.events_topic, 50)
    assert sorted(values(got), key=lambda e: e["event_id"]) == sorted(sent, key=lambda e: e["event_id"])
    for message in got:
        assert message.key().decode() == json.loads(message.value())["client_id"]


def test_partitions_match_javas_murmur2_for_many_keys(settings_factory: SettingsFactory) -> None:
    settings = settings_factory(ORDERFLOW_PARTITIONS="7")
    create_topics(settings)
    clients = [f"client-{i}-é" for i in range(300)]
    Publisher(settings).publish(make_event(f"o-{c}", "created", client_id=c) for c in clients)

    got = consume_all(settings.bootstrap, settings.events_topic, len(clients))
    assert len(got) == len(clients)
    partitions = list(range(7))
    for message in got:
        expected = DefaultPartitioner()(message.key(), partitions, partitions)
        assert message.partition() == expected, message.key()
    assert len({m.partition() for m in got}) == 7


def test_publish_command_sends_good_lines_and_reports_bad_ones(
    settings_factory: SettingsFactory, tmp_path: Path
) -> None:
    settings = settings_factory()
    create_topics(settings)
    good = [make_event(f"o{i}", "created") for i in range(3)]
    lines = [
        json.dumps(good[0]),
        "{not json",
        json.dumps(good[1]),
        json.dumps({k: v for k, v in good[2].items() if k != "order_id"}),
        "",
        json.dumps(good[2]),
    ]
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(lines) + "\n")
    result = subprocess.run(
        [sys.executable, "-m", "streams.tools.cli", "publish", str(source)],
        capture_output=True, text=True, env={**os.environ, **settings_env(settings)}, timeout=60,
    )
    assert result.returncode == 1
    assert "line 2: not valid JSON" in result.stderr
    assert "line 4: field `order_id` is missing" in result.stderr
    assert "sent 3, invalid 2, undelivered 0" in result.stdout
    got = consume_all(settings.bootstrap, settings.events_topic, 3)
    assert sorted(e["event_id"] for e in values(got)) == sorted(e["event_id"] for e in good)


def test_publish_of_a_missing_file_is_one_line(settings_factory: SettingsFactory) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "streams.tools.cli", "publish", "/nonexistent.jsonl"],
        capture_output=True, text=True, env={**os.environ, **settings_env(settings_factory())},
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "orderflow: cannot read /nonexistent.jsonl: No such file or directory"]
