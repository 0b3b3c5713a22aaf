"""`orderflow demo`: the whole system on one machine, checked end to end.

Starts a local Kafka unless one answers, creates the topics, starts a gateway that fails sometimes,
two `faust worker` processes and the simulator; prints the dashboard URL; when the traffic is done,
checks every order through the views against the simulator's expected outcome and prints a verdict.
Ctrl-C (or the end, unless --stay) stops everything it started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

from streams.config import Settings
from streams.errors import OrderflowError
from streams.tools.localkafka import LocalKafka
from streams.tools.simulate import publish, traffic, write_expected
from streams.tools.topics import create_topics


@dataclass
class Options:
    orders: int = 500
    clients: int = 50
    rate: float = 300.0
    error_rate: float = 0.1
    web_port: int = 6066
    workdir: Path = Path("./orderflow-demo")
    timeout_s: float = 180.0
    stay: bool = False
    seed: int = 1


def say(text: str) -> None:
    print(f"demo: {text}", flush=True)


def get_json(url: str, timeout: float = 5.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except (OSError, ValueError):
        return 0, None


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cluster:
    """Everything the demo started, so that all of it can be stopped."""

    kafka: LocalKafka | None = None
    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def spawn(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        proc = subprocess.Popen(args, env={**os.environ, **env}, stdout=log.open("ab"),
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append((name, proc))

    def check_alive(self) -> None:
        for name, proc in self.processes:
            if proc.poll() is not None:
                raise OrderflowError(f"{name} exited with code {proc.returncode}; see its log")

    def stop(self) -> None:
        for _name, proc in reversed(self.processes):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in reversed(self.processes):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                say(f"{name} did not stop in 30 s; killing it")
                proc.kill()
                proc.wait()
        if self.processes:
            say(f"stopped {', '.join(name for name, _ in self.processes)}")
        self.processes = []
        if self.kafka is not None:
            self.kafka.stop()
            say("stopped the local Kafka it started")
            self.kafka = None


def _kafka(settings: Settings, workdir: Path, cluster: Cluster) -> None:
    host, _, port = settings.bootstrap.split(",")[0].rpartition(":")
    broker = LocalKafka(port=int(port), data_dir=workdir / "kafka")
    if broker.answers():
        say(f"using the Kafka that answers at {settings.bootstrap}")
        return
    if host not in ("127.0.0.1", "localhost"):
        raise OrderflowError(f"no Kafka answers at {settings.bootstrap}")
    say(f"starting a local Kafka on {broker.bootstrap} (first run downloads it)")
    broker.start()
    cluster.kafka = broker


def _wait_ready(urls: list[str], cluster: Cluster, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        cluster.check_alive()
        ready = [url for url in urls if get_json(f"{url}/ready/", 2)[0] == 200]
        if len(ready) == len(urls):
            return
        print(f"\r  waiting for workers: {len(ready)}/{len(urls)} ready", end="", file=sys.stderr,
              flush=True)
        time.sleep(1)
    raise OrderflowError(f"workers not ready after {timeout_s:.0f} s")


def _check(urls: list[str], expected: dict[str, tuple[str, int]], clients: dict[str, str]
           ) -> tuple[set[str], dict[str, Any]]:
    """Orders that are right, asking each client's orders of alternating workers."""
    by_client: dict[str, list[str]] = {}
    for order_id, client_id in clients.items():
        by_client.setdefault(client_id, []).append(order_id)
    right: set[str] = set()
    seen: dict[str, Any] = {}
    for n, client_id in enumerate(sorted(by_client)):
        for order in _client_orders(urls[n % len(urls)], client_id):
            seen[order["order_id"]] = order
            if (order["status"], order["version"]) == expected.get(order["order_id"]):
                right.add(order["order_id"])
    return right, seen


def _client_orders(url: str, client_id: str) -> list[dict[str, Any]]:
    """Every order of the client, page by page (what it holds so far, should a worker not answer)."""
    orders: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        after = f"&after={cursor}" if cursor else ""
        status, body = get_json(f"{url}/clients/{quote(client_id, safe='')}/orders/?limit=1000{after}")
        if status != 200 or body is None:
            return orders
        orders.extend(body["orders"])
        cursor = body.get("next")
        if not cursor:
            return orders


def run(settings: Settings, options: Options) -> int:
    """The demo; the exit code says whether every order ended right."""
    if "ORDERFLOW_APP_ID" not in os.environ:
        settings = replace(settings, app_id="orderflow-demo")
    workdir = options.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    cluster = Cluster()
    run_id = uuid.uuid4().hex[:6]
    # SIGTERM (a supervisor, `timeout`, `kill`) stops everything the demo started, as Ctrl-C does;
    # a Python process ends on SIGTERM without running its clean-up, leaving Kafka and workers behind.
    # SIGINT gets the handler too: started in the background by a shell, Python inherits it ignored.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        _kafka(settings, workdir, cluster)
        for name, outcome in create_topics(settings).items():
            say(f"topic {name}: {outcome}")
        gateway_port = _free_port()
        cluster.spawn("gateway", [sys.executable, "-m", "streams.tools.cli", "gateway",
                                  "--port", str(gateway_port), "--error-rate", str(options.error_rate),
                                  "--timeout-rate", "0.02", "--throttle-rate", "0.02", "--hang-s", "3"],
                      {}, workdir / "gateway.log")
        ports = [p if _port_free(p) else _free_port() for p in (options.web_port, options.web_port + 1)]
        env = {
            "KAFKA_BOOTSTRAP": settings.bootstrap, "ORDERFLOW_APP_ID": settings.app_id,
            "ORDERFLOW_EVENTS_TOPIC": settings.events_topic, "ORDERFLOW_RETRY_TOPIC": settings.retry_topic,
            "ORDERFLOW_DLQ_TOPIC": settings.dlq_topic, "ORDERFLOW_CHANGES_TOPIC": settings.changes_topic,
            "ORDERFLOW_PARTITIONS": str(settings.partitions),
            "ORDERFLOW_EFFECTS_URL": f"http://127.0.0.1:{gateway_port}", "ORDERFLOW_EFFECT_TIMEOUT_S": "1",
            "ORDERFLOW_RETRY_BASE_S": "0.2", "ORDERFLOW_RETRY_CAP_S": "2",
            "ORDERFLOW_RETRY_MAX_ATTEMPTS": "30", "ORDERFLOW_WEB_HOST": "127.0.0.1",
        }
        for n, port in enumerate(ports, start=1):
            cluster.spawn(f"worker{n}", [sys.executable, "-m", "faust", "-A", "streams.app", "worker",
                                         "-l", "warn", "--web-port", str(port), "--web-host", "127.0.0.1"],
                          {**env, "ORDERFLOW_STATE_DIR": str(workdir / f"state-{n}")},
                          workdir / f"worker{n}.log")
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        say(f"gateway on :{gateway_port} failing {options.error_rate:.0%} of calls; workers on "
            f"{', '.join(urls)}; logs in {workdir}")
        _wait_ready(urls, cluster)
        say(f"dashboard: {urls[0]}/")
        before = get_json(f"{urls[0]}/stats/")[1] or {}

        made = traffic(options.orders, options.clients, options.seed, prefix=f"demo{run_id}-")
        expected_file = workdir / "expected.jsonl"
        write_expected(made, expected_file)
        say(f"simulating {options.orders} orders of {options.clients} clients: {len(made.events)} events "
            f"({made.duplicates} duplicates, {made.swapped} out of order, "
            f"{len(made.impossible)} impossible); expected outcomes in {expected_file}")
        sent = publish(settings, made, options.rate)
        say(f"published {sent} events; checking every order through the views")

        deadline = time.monotonic() + options.timeout_s
        right: set[str] = set()
        while time.monotonic() < deadline:
            cluster.check_alive()
            right, _seen = _check(urls, made.expected, made.clients)
            print(f"\r  {len(right)}/{len(made.expected)} orders right", end="", file=sys.stderr, flush=True)
            if len(right) == len(made.expected):
                break
            time.sleep(1)
        print(file=sys.stderr)
        time.sleep(2)  # let the last ticks persist the counters
        after = get_json(f"{urls[0]}/stats/")[1] or {}
        ok = _verdict(made.expected, right, made.impossible, before, after)
        if options.stay:
            say(f"still running; dashboard {urls[0]}/ ; Ctrl-C stops everything")
            while True:
                cluster.check_alive()
                time.sleep(1)
        return 0 if ok else 1
    except KeyboardInterrupt:
        say("interrupted; stopping everything")
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        cluster.stop()


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def _delta(after: dict[str, Any], before: dict[str, Any], *path: str) -> int:
    def dig(d: Any) -> int:
        for key in path:
            d = (d or {}).get(key, 0)
        return int(d or 0)
    return dig(after) - dig(before)


def _verdict(expected: dict[str, tuple[str, int]], right: set[str], impossible: list[str],
             before: dict[str, Any], after: dict[str, Any]) -> bool:
    wrong = sorted(set(expected) - right)
    rejected = _delta(after, before, "dead_letters", "by_kind", "rejected")
    other_letters = _delta(after, before, "dead_letters", "total") - rejected
    say(f"orders right: {len(right)}/{len(expected)}; wrong or missing: {len(wrong)}"
        + (f" (e.g. {', '.join(wrong[:5])})" if wrong else ""))
    say(f"duplicates dropped: {_delta(after, before, 'events', 'duplicates_dropped')}; "
        f"retries fired: {_delta(after, before, 'retries', 'fired')}; "
        f"dead letters: {rejected} rejected (expected {len(impossible)}), {other_letters} other")
    ok = not wrong
    say("verdict: all right" if ok else "verdict: WRONG")
    return ok
