"""Shared fixtures: one real Kafka broker per test session, unique names per test.

The broker is started through `streams.tools.localkafka` (the code behind `orderflow kafka start`).
If it cannot start, every Kafka test FAILS with the reason; nothing is skipped.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streams.config import Settings
from streams.tools.localkafka import LocalKafka
from tests.helpers import apt_install, tell


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_pair() -> int:
    """A port whose successor is free too (the broker's controller listens on port + 1)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free pair of ports")


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A real Apache Kafka broker for the whole session (KAFKA_TEST_BOOTSTRAP uses a running one)."""
    external = os.environ.get("KAFKA_TEST_BOOTSTRAP")
    if external:
        port = external.rpartition(":")[2]
        yield LocalKafka(port=int(port), data_dir=tmp_path_factory.mktemp("unused"))
        return
    broker = LocalKafka(port=free_port_pair(), data_dir=tmp_path_factory.mktemp("kafka"))
    try:
        broker.start()
    except Exception as exc:
        pytest.fail(f"the test Kafka broker could not start: {exc}", pytrace=False)
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def chromium(request: pytest.FixtureRequest) -> str:
    """Debian's chromium for the dashboard test: found, or installed with apt-get (saying so), so
    the test command needs nothing installed by hand on a Debian machine."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    tell(request, "tests: chromium is missing; installing Debian's chromium for the dashboard test "
        "(apt-get install chromium, about a minute)")
    apt_install("chromium")
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("apt-get installed chromium, yet no chromium command is on PATH", pytrace=False)
    tell(request, f"tests: installed {found}")
    return found


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic names and group ids."""
    return uuid.uuid4().hex[:10]


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def settings_factory(kafka: LocalKafka, unique: str, tmp_path: Path) -> SettingsFactory:
    """Settings for this test: the session broker, unique topics and app id, a private state dir."""

    def make(**env: str) -> Settings:
        base = {
            "KAFKA_BOOTSTRAP": kafka.bootstrap,
            "ORDERFLOW_APP_ID": f"of-{unique}",
            "ORDERFLOW_EVENTS_TOPIC": f"events-{unique}",
            "ORDERFLOW_RETRY_TOPIC": f"retry-{unique}",
            "ORDERFLOW_DLQ_TOPIC": f"dlq-{unique}",
            "ORDERFLOW_CHANGES_TOPIC": f"changes-{unique}",
            "ORDERFLOW_PARTITIONS": "4",
            "ORDERFLOW_STATE_DIR": str(tmp_path / "state"),
        }
        return Settings.from_env({**base, **env})

    return make


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment variables that reproduce `settings` in a child process."""
    return {
        "KAFKA_BOOTSTRAP": settings.bootstrap,
        "ORDERFLOW_APP_ID": settings.app_id,
        "ORDERFLOW_EVENTS_TOPIC": settings.events_topic,
        "ORDERFLOW_RETRY_TOPIC": settings.retry_topic,
        "ORDERFLOW_DLQ_TOPIC": settings.dlq_topic,
        "ORDERFLOW_CHANGES_TOPIC": settings.changes_topic,
        "ORDERFLOW_PARTITIONS": str(settings.partitions),
        "ORDERFLOW_STATE_DIR": str(settings.state_dir),
    }
