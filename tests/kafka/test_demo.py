"""`orderflow demo` end to end on the session's broker: verdict all right, and Ctrl-C stops it all."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from tests.conftest import SettingsFactory, free_port, settings_env
from tests.workers import ROOT


def test_demo_small_run_is_all_right_and_ctrl_c_stops_everything(
    settings_factory: SettingsFactory, tmp_path: Path
) -> None:
    settings = settings_factory(ORDERFLOW_PARTITIONS="4")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "demo", "--orders", "60", "--clients", "6", "--rate", "0",
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
        proc.send_signal(signal.SIGINT)
        proc.wait(90)
    while not lines.empty():
        output.append(lines.get())
    assert "stopped gateway, worker1, worker2" in "".join(output)
    for p in (port, port + 1):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{p}/health", timeout=2)
            raise AssertionError(f"a worker still answers on {p} after Ctrl-C")
        except OSError:
            pass
