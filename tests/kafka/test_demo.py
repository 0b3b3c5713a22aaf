"""`orderflow demo` end to end on the session's broker: verdict all right, and Ctrl-C or SIGTERM
stops it all."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import SettingsFactory, free_port, settings_env
from tests.workers import ROOT


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_demo_small_run_is_all_right_and_ctrl_c_stops_everything(
    settings_factory: SettingsFactory, tmp_path: Path, stop: signal.Signals
) -> None:
    settings = settings_factory(ORDERFLOW_PARTITIONS="4")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.tools.cli", "demo", "--orders", "60", "--clients", "6", "--rate", "0",
         "--workdir", str(tmp_path / "demo"), "--web-port", str(port), "--stay"],
        cwd=ROOT, env={**os.environ, **settings_env(settings)}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    output: list[str] = []
    deadline = time.monotonic() + 240
    try:
        while not any("still running" in line for line in output):
            assert time.monotonic() < deadline and proc.poll() is None, "".join(output)
            try:
                output.append(lines.get(timeout=1))
            except queue.Empty:
                continue
        text = "".join(output)
        print(text)
        assert "demo: verdict: all right" in text
        assert "orders right: 60/60" in text
        assert f"dashboard: http://127.0.0.1:{port}/" in text
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=10) as answer:
            assert answer.status == 200
    finally:
        proc.send_signal(stop)
        proc.wait(90)
    while not lines.empty():
        output.append(lines.get())
    assert "stopped gateway, worker1, worker2" in "".join(output)
    for p in (port, port + 1):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{p}/health", timeout=2)
            raise AssertionError(f"a worker still answers on {p} after {stop.name}")
        except OSError:
            pass


def test_simulate_publishes_the_traffic_and_writes_the_expected_outcomes(
    settings_factory: SettingsFactory, tmp_path: Path
) -> None:
    from streams.tools.simulate import read_expected
    from streams.tools.topics import create_topics
    from tests.helpers import consume_all

    settings = settings_factory()
    create_topics(settings)
    expected = tmp_path / "expected.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "streams.tools.cli", "simulate", "--orders", "30", "--clients", "4",
         "--rate", "0", "--prefix", "sim-", "--expected", str(expected)],
        cwd=ROOT, env={**os.environ, **settings_env(settings)}, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    sent = int(result.stdout.split("published ")[1].split()[0])
    rows = read_expected(expected)
    assert len(rows) == 30 and all(r["order_id"].startswith("sim-") for r in rows.values())
    assert f"{sent}/{sent} events" in result.stderr  # the progress bar reached the end
    messages = consume_all(settings.bootstrap, settings.events_topic, sent)
    assert len(messages) == sent
    for message in messages:  # keyed by client_id, so each client's events stay in order
        assert message.key().decode() == rows[json.loads(message.value())["order_id"]]["client_id"]
