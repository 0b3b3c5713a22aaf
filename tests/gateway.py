"""`orderflow gateway` as a real process, for integration tests and the benchmark."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]


class GatewayProcess:
    """Start with fault flags (`--error-rate 0.3`, ...); read `/_stats`; change faults live."""

    def __init__(self, log_path: Path, *flags: str) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.flags = flags
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> GatewayProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.tools.cli", "gateway", "--port", str(self.port), *self.flags],
            cwd=ROOT, stdout=self.log_path.open("ab"), stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited: {self.log_path.read_text()}")
            try:
                self._call("GET", "/health")
                return self
            except OSError:
                time.sleep(0.2)
        raise AssertionError("gateway did not answer in 30 s")

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def stats(self, times: bool = False) -> dict[str, Any]:
        return dict(self._call("GET", "/_stats?times=1" if times else "/_stats"))

    def faults(self, **changes: float) -> None:
        self._call("POST", "/_faults", changes)

    def script(self, order_id: str, status: int, times: int, retry_after_s: float | None = None) -> None:
        self._call("POST", "/_script", {"order_id": order_id, "status": status, "times": times,
                                        "retry_after_s": retry_after_s})

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
