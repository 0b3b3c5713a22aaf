"""docker-compose.yml cannot run here (no Docker engine), so check what a user relies on in it."""

from __future__ import annotations

import yaml

from tests.workers import ROOT


def test_compose_runs_kafka_topics_gateway_two_workers_and_a_simulator_profile() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"kafka", "topics", "gateway", "worker1", "worker2", "simulator"}
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft
    assert services["simulator"]["profiles"] == ["simulate"]
    for name in ("worker1", "worker2"):
        worker = services[name]
        assert worker["command"][:4] == ["faust", "-A", "streams.app", "worker"]
        assert worker["environment"]["KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert worker["environment"]["ORDERFLOW_WEB_HOST"] == name  # peers reach it by service name
        assert worker["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert services["worker1"]["environment"]["ORDERFLOW_EFFECTS_URL"] == "http://gateway:8080"
    assert services["topics"]["command"] == ["orderflow", "topics", "create"]
    assert (ROOT / "Dockerfile").read_text().count("COPY streams streams") == 1
