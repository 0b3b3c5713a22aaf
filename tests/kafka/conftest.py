"""Fixtures for tests that run real `faust worker` and gateway processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streams.config import Settings
from streams.tools.topics import create_topics
from tests.gateway import GatewayProcess
from tests.workers import Worker

StartWorker = Callable[..., Worker]
StartGateway = Callable[..., GatewayProcess]


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[StartWorker]:
    """Start a worker (topics created first) and wait until it is ready; stopped after the test."""
    started: list[Worker] = []

    def start(settings: Settings, name: str = "w1", app: str = "streams.app", **env: str) -> Worker:
        create_topics(settings)
        worker = Worker(settings, tmp_path, name, app, **env).start()
        started.append(worker)
        return worker.wait_ready()

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator[StartGateway]:
    """Start `orderflow gateway` with the given flags; stopped after the test."""
    started: list[GatewayProcess] = []

    def start(*flags: str) -> GatewayProcess:
        gateway = GatewayProcess(tmp_path / f"gateway{len(started)}.log", *flags).start()
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()
