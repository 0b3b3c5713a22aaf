"""`orderflow kafka start|stop|status`: a restart keeps topics and messages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from streams.config import Settings
from streams.tools.localkafka import LocalKafka
from streams.tools.publisher import Publisher
from streams.tools.topics import create_topics
from tests.conftest import free_port_pair
from tests.helpers import consume_all, make_event


def orderflow(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams.tools.cli", *args], capture_output=True,
                          text=True, timeout=180, env=os.environ.copy())


def test_stop_then_start_keeps_a_topic_and_its_messages(tmp_path: Path) -> None:
    port, data = str(free_port_pair()), str(tmp_path / "broker")
    where = ["--port", port, "--data-dir", data]
    started = orderflow("kafka", "start", *where)
    try:
        assert started.returncode == 0, started.stderr
        assert f"listening on 127.0.0.1:{port}" in started.stdout
        again = orderflow("kafka", "start", *where)
        assert again.returncode == 0 and "already running" in again.stdout

        settings = Settings.from_env({"KAFKA_BOOTSTRAP": f"127.0.0.1:{port}",
                                      "ORDERFLOW_PARTITIONS": "2"})
        create_topics(settings)
        sent = [make_event(f"o{i}", "created") for i in range(10)]
        assert Publisher(settings).publish(sent).ok

        assert orderflow("kafka", "stop", *where).stdout.strip() == "kafka stopped"
        assert orderflow("kafka", "status", *where).returncode == 3
        assert orderflow("kafka", "start", *where).returncode == 0
        assert "kafka running" in orderflow("kafka", "status", *where).stdout

        got = consume_all(settings.bootstrap, settings.events_topic, 10)
        assert sorted(m.value() for m in got) == sorted(
            Publisher.encode(e) for e in sent)
    finally:
        LocalKafka(port=int(port), data_dir=Path(data)).stop()


def test_missing_java_is_a_one_line_error(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path), "ORDERFLOW_CACHE_DIR": str(tmp_path / "cache")}
    result = subprocess.run(
        [sys.executable, "-m", "streams.tools.cli", "kafka", "start", "--port", str(free_port_pair()),
         "--data-dir", str(tmp_path / "d")],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "orderflow: Java 17+ is needed to run Kafka: install it (apt-get install openjdk-17-jre)"]
