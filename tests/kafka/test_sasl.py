"""A secured cluster, for real: a local broker that takes SASL (SCRAM-SHA-512) only, and orderflow's
worker and commands configured as the README says. A wrong password is one clear line and a
non-zero exit; the password never shows in logs, errors, `repr` or the views."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.config import Settings
from tests.conftest import free_port_pair
from tests.helpers import make_event
from tests.workers import ROOT, Worker, wait_for

PASSWORD = "Pw-9f3kQz-unique-7731"


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A broker of its own (SASL only), started through `orderflow kafka start --sasl`."""
    data = tmp_path_factory.mktemp("sasl-kafka")
    port = str(free_port_pair())
    env = {"KAFKA_BOOTSTRAP": f"127.0.0.1:{port}", "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
           "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "orderflow",
           "KAFKA_SASL_PASSWORD": PASSWORD, "ORDERFLOW_PARTITIONS": "2",
           "ORDERFLOW_APP_ID": "sasl-app", "ORDERFLOW_EVENTS_TOPIC": "sasl-events",
           "ORDERFLOW_RETRY_TOPIC": "sasl-retry", "ORDERFLOW_DLQ_TOPIC": "sasl-dlq"}
    where = ["--port", port, "--data-dir", str(data)]
    started = orderflow(env, "kafka", "start", "--sasl", *where)
    assert started.returncode == 0, started.stderr
    try:
        yield {**env, "BROKER_DATA": str(data)}
    finally:
        orderflow(env, "kafka", "stop", *where)


def orderflow(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams.tools.cli", *args], capture_output=True, text=True,
                          timeout=120, input=stdin, env={**os.environ, **env}, cwd=ROOT)


def test_worker_and_commands_run_on_a_sasl_cluster(sasl_broker: dict[str, str], tmp_path: Path) -> None:
    env = {k: v for k, v in sasl_broker.items() if k != "BROKER_DATA"}
    created = orderflow(env, "topics", "create")
    assert created.returncode == 0, created.stderr
    settings = Settings.from_env(env)
    worker = Worker(settings, tmp_path, "secure", **env).start()
    try:
        worker.wait_ready(timeout=120)
        events = [make_event("s1", "created", client_id="c1"), make_event("s1", "paid", client_id="c1"),
                  make_event("s1", "created", client_id="c1")]
        events[2]["order_id"] = "s2"
        impossible = make_event("s1", "accepted", client_id="c1")  # paid can never be accepted
        lines = "".join(json.dumps(e) + "\n" for e in [*events, impossible])
        published = orderflow(env, "publish", "-", stdin=lines)
        assert published.returncode == 0, published.stderr
        order = wait_for(lambda: (r := worker.get("/orders/s1"))[0] == 200 and r[1]["status"] == "paid"
                         and r[1], timeout=60, what="s1 paid on the SASL cluster")
        assert order["version"] == 2

        def listed() -> str | None:
            out = orderflow(env, "dlq", "list")
            return out.stdout if out.returncode == 0 and "1 shown of 1" in out.stdout else None
        text = wait_for(listed, timeout=60, interval=1, what="the rejected event in `dlq list`")
        assert impossible["event_id"] in text

        for path in ("/stats", "/metrics", "/", "/orders/s1"):
            assert PASSWORD not in str(worker.get(path)[1])
    finally:
        worker.stop()
    assert PASSWORD not in worker.log_path.read_text(errors="replace")
    assert PASSWORD not in repr(settings)


def test_a_wrong_password_is_one_clear_line_and_a_non_zero_exit(sasl_broker: dict[str, str],
                                                                tmp_path: Path) -> None:
    env = {k: v for k, v in sasl_broker.items() if k != "BROKER_DATA"}
    wrong = {**env, "KAFKA_SASL_PASSWORD": "not-the-" + PASSWORD}
    lines = json.dumps(make_event("w1", "created", client_id="c1")) + "\n"
    for command in (["topics", "create"], ["publish", "-"], ["dlq", "list"]):
        began = time.monotonic()
        result = orderflow(wrong, *command, stdin=lines)
        took = time.monotonic() - began
        assert result.returncode != 0, command
        assert took < 30, (command, took)
        said = result.stderr.strip().splitlines()
        assert len(said) == 1, (command, result.stderr)
        assert "refused user 'orderflow'" in said[0] and "KAFKA_SASL_PASSWORD" in said[0]
        assert PASSWORD not in result.stdout + result.stderr
        assert "%3|" not in result.stdout + result.stderr
    settings = Settings.from_env(wrong)
    worker = Worker(settings, tmp_path, "refused", **wrong).start()
    assert worker.proc is not None
    assert worker.proc.wait(90) != 0
    log = worker.log_path.read_text(errors="replace")
    assert "SaslAuthenticationFailed" in log
    assert PASSWORD not in log
    assert PASSWORD not in (Path(sasl_broker["BROKER_DATA"]) / "broker.log").read_text(errors="replace")
