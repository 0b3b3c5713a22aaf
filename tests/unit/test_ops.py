"""The operator's kit (ops/): the alert rules pass `promtool check rules`, and every metric the
rules and the Grafana dashboard name is one `/metrics` exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter

import pytest
import yaml

from streams.core.stats import PartitionStats
from streams.web.metrics import Metrics
from tests.helpers import apt_install, tell
from tests.workers import ROOT

OPS = ROOT / "ops"
NAME = re.compile(r"\borderflow_[a-z_]+")


@pytest.fixture(scope="session")
def promtool(request: pytest.FixtureRequest) -> str:
    """Prometheus's promtool: found, or installed from Debian's `prometheus` package (saying so)."""
    found = shutil.which("promtool")
    if found:
        return found
    tell(request, "tests: promtool is missing; installing Debian's prometheus package for it (apt-get)")
    apt_install("prometheus")
    found = shutil.which("promtool")
    if not found:
        pytest.fail("the prometheus package is installed, yet no promtool is on PATH", pytrace=False)
    return found


def exported_names() -> set[str]:
    """Every sample name a worker's /metrics shows, with counts, census and gauges filled in."""
    stats = PartitionStats()
    for key in ("events", "events.paid.applied", "dead_letters.rejected", "applied", "duplicates"):
        stats.count(0, key)
    stats.census[0] = Counter({"status.paid": 3, "stuck": 1, "retry_pending": 1, "parked": 2})
    metrics = Metrics(stats, lambda: 0, lambda: {("orders.events", 0): 5}, lambda: True, lambda: 0)
    metrics.observe_latency(0.02)
    text = metrics.text().decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines()
            if line and not line.startswith("#")}


def named_in(texts: list[str]) -> set[str]:
    return {name for text in texts for name in NAME.findall(text)}


def test_the_alert_rules_pass_promtool(promtool: str) -> None:
    checked = subprocess.run([promtool, "check", "rules", str(OPS / "prometheus/alerts.yml")],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 5 rules found" in checked.stdout + checked.stderr
    config = subprocess.run([promtool, "check", "config", str(OPS / "prometheus/prometheus.yml")],
                            capture_output=True, text=True, timeout=60)
    assert config.returncode == 0, config.stdout + config.stderr


def test_the_rules_cover_what_an_operator_is_woken_for() -> None:
    rules = yaml.safe_load((OPS / "prometheus/alerts.yml").read_text())["groups"][0]["rules"]
    watched = {rule["alert"]: named_in([rule["expr"]]) for rule in rules}
    assert watched == {
        "OrderflowConsumerLagGrowing": {"orderflow_consumer_lag"},
        "OrderflowDeadLetters": {"orderflow_dead_letters_total"},
        "OrderflowTimedWorkOverdue": {"orderflow_timed_work_overdue"},
        "OrderflowStuckOrders": {"orderflow_orders_stuck"},
        "OrderflowWorkerNotReady": {"orderflow_ready"},
    }


def test_every_metric_the_rules_and_the_dashboard_name_is_exported() -> None:
    rules = yaml.safe_load((OPS / "prometheus/alerts.yml").read_text())["groups"][0]["rules"]
    dashboard = json.loads((OPS / "grafana/dashboards/orderflow.json").read_text())
    exprs = [rule["expr"] for rule in rules]
    exprs += [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    named = named_in(exprs)
    assert len(named) >= 10
    assert named <= exported_names(), named - exported_names()


def test_the_check_itself_would_see_a_missing_metric() -> None:
    assert "orderflow_no_such_thing" not in exported_names()
    assert named_in(["rate(orderflow_no_such_thing_total[1m])"]) == {"orderflow_no_such_thing_total"}
