"""docker-compose.yml cannot run here (no Docker engine), so check what a user relies on in it."""

from __future__ import annotations

import yaml

from tests.workers import ROOT


def test_compose_runs_kafka_topics_gateway_two_workers_and_a_simulator_profile() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"kafka", "topics", "gateway", "worker1", "worker2", "simulator",
                             "prometheus", "grafana"}
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
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.count("COPY streams streams") == 1
    # the image runs the compiled hot path: setup.py builds it, with a C compiler
    assert "COPY pyproject.toml setup.py" in dockerfile and "gcc" in dockerfile


def test_prometheus_scrapes_every_worker_and_grafana_is_provisioned() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    workers = {name: s for name, s in services.items() if s.get("command", [None])[0] == "faust"}
    config = yaml.safe_load((ROOT / "ops/prometheus/prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] for group in job["static_configs"]
               for t in group["targets"]}
    web_ports = {name: w["command"][w["command"].index("--web-port") + 1] for name, w in workers.items()}
    assert targets == {f"{name}:{port}" for name, port in web_ports.items()}
    assert config["rule_files"] == ["alerts.yml"]
    mounts = {m.split(":")[0]: m.split(":")[1] for m in services["prometheus"]["volumes"]}
    assert mounts == {"./ops/prometheus": "/etc/prometheus"}
    grafana = {m.split(":")[0]: m.split(":")[1] for m in services["grafana"]["volumes"]}
    provider = yaml.safe_load((ROOT / "ops/grafana/provisioning/dashboards/orderflow.yml").read_text())
    assert grafana["./ops/grafana/dashboards"] == provider["providers"][0]["options"]["path"]
    assert grafana["./ops/grafana/provisioning"] == "/etc/grafana/provisioning"
    source = yaml.safe_load((ROOT / "ops/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert source["datasources"][0]["url"] == "http://prometheus:9090"
