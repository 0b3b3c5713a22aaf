"""Chaos, in the project: workers SIGKILLed and restarted, the broker SIGKILLed once, a gateway that
fails, two partitioners; then every order, every effect and every dead letter is checked.

    python bench/chaos.py [--orders 10000] [--clients 500] [--kill-every 10] [--min-kills 6]

Starts its own broker (the project's local Kafka, data on disk) and `orderflow gateway` (10% 503
before applying, 1% applied and then answered only after the client's timeout), three `faust
worker` processes, and publishes the simulator's traffic (5% of events sent twice, neighbours
swapped, impossible events) at `--rate`: half the clients through the project's publisher (murmur2),
half through a plain librdkafka producer (its default partitioner, CRC32). Meanwhile a random
worker is SIGKILLed every ~`--kill-every` seconds and restarted on its state dir, and halfway
through the broker is SIGKILLed and restarted. When the traffic is in and the kills are done, it
waits for every order to settle and compares, with an independent model (`tests/reference.py`):

- every order through the views: lost (version below the model), applied twice (above it, or an
  event applied twice in its history);
- the gateway's per-Idempotency-Key counts with the effects the model implies (`paid` ships,
  `cancelled` after `paid` refunds): missing, applied twice;
- the dead-letter topic with the model's rejected events: expected, found (distinct ids),
  duplicated (records beyond one per id).

Prints the table; `--results` appends it to bench/RESULTS.md. Exit code 0 only when nothing is
lost, applied twice, missing or duplicated.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from confluent_kafka import Producer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streams.config import Settings  # noqa: E402
from streams.core.lifecycle import DEFAULT  # noqa: E402
from streams.kafka_clients import client_config  # noqa: E402
from streams.tools.localkafka import LocalKafka  # noqa: E402
from streams.tools.publisher import Publisher  # noqa: E402
from streams.tools.simulate import traffic  # noqa: E402
from streams.tools.topics import create_topics  # noqa: E402
from tests.conftest import free_port_pair  # noqa: E402
from tests.gateway import GatewayProcess  # noqa: E402
from tests.helpers import consume_all, values  # noqa: E402
from tests.reference import run_model  # noqa: E402
from tests.workers import Worker  # noqa: E402

WORKER_ENV = {"ORDERFLOW_SESSION_TIMEOUT_S": "8", "ORDERFLOW_HEARTBEAT_S": "1",
              "ORDERFLOW_SWEEP_INTERVAL_S": "0.5", "ORDERFLOW_EFFECT_TIMEOUT_S": "2",
              "ORDERFLOW_RETRY_BASE_S": "0.2", "ORDERFLOW_RETRY_CAP_S": "2",
              "ORDERFLOW_RETRY_MAX_ATTEMPTS": "12", "ORDERFLOW_PARK_TIMEOUT_S": "900",
              "ORDERFLOW_STUCK_AFTER_S": "45"}


@dataclass
class Options:
    orders: int = 10_000
    clients: int = 500
    workers: int = 3
    partitions: int = 8
    rate: float = 400.0  # events per second
    kill_every_s: float = 10.0
    min_kills: int = 6
    broker_kill: bool = True
    settle_timeout_s: float = 600.0
    seed: int = 1
    workdir: Path | None = None


@dataclass
class Report:
    events: int = 0
    duplicates_sent: int = 0
    swapped: int = 0
    worker_kills: int = 0
    worker_restarts: int = 0  # exits the supervisor saw (not kills): no broker at start, or stuck
    broker_kills: int = 0
    orders: int = 0
    right: int = 0
    lost: int = 0
    applied_twice: int = 0
    effects_expected: int = 0
    effects_missing: int = 0
    effects_twice: int = 0
    effects_unexpected: int = 0
    letters_expected: int = 0
    letters_found: int = 0
    letters_duplicated: int = 0
    letters_other: dict[str, int] = field(default_factory=dict)
    settle_s: float = 0.0
    wrong: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (self.right == self.orders and not self.lost and not self.applied_twice
                and not self.effects_missing and not self.effects_twice and not self.effects_unexpected
                and self.letters_found == self.letters_expected and not self.letters_duplicated)

    def table(self) -> str:
        rows = [
            ("events published", f"{self.events} ({self.duplicates_sent} sent twice, "
                                 f"{self.swapped} orders with swapped neighbours)"),
            ("kills", f"{self.worker_kills} workers (SIGKILL), {self.broker_kills} broker (SIGKILL); "
                      f"{self.worker_restarts} worker exits restarted"),
            ("orders right", f"{self.right} / {self.orders}"),
            ("lost (version below the model)", str(self.lost)),
            ("applied twice (above the model)", str(self.applied_twice)),
            ("effects missing", f"{self.effects_missing} of {self.effects_expected}"),
            ("effects applied twice", str(self.effects_twice)),
            ("effects not implied by the model", str(self.effects_unexpected)),
            ("dead letters expected / found / duplicated",
             f"{self.letters_expected} / {self.letters_found} / {self.letters_duplicated}"),
            ("other dead letters", json.dumps(self.letters_other) if self.letters_other else "none"),
            ("seconds to settle", f"{self.settle_s:.1f}"),
        ]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"| {name.ljust(width)} | {value} |" for name, value in rows)


def say(text: str) -> None:
    print(f"chaos: {text}", file=sys.stderr, flush=True)


class Chaos:
    """One run: the broker, the gateway, the workers, the traffic and the killing."""

    def __init__(self, options: Options, workdir: Path) -> None:
        self.options = options
        self.workdir = workdir
        self.rng = random.Random(options.seed)
        self.broker = LocalKafka(port=free_port_pair(), data_dir=workdir / "kafka")
        unique = uuid.uuid4().hex[:8]
        self.settings = Settings.from_env({
            "KAFKA_BOOTSTRAP": self.broker.bootstrap, "ORDERFLOW_APP_ID": f"chaos-{unique}",
            "ORDERFLOW_PARTITIONS": str(options.partitions),
            "ORDERFLOW_EVENTS_TOPIC": "orders.events", "ORDERFLOW_RETRY_TOPIC": "orders.retry",
            "ORDERFLOW_DLQ_TOPIC": "orders.dlq",
        })
        self.workers: list[Worker] = []
        self.gateway: GatewayProcess | None = None
        self.report = Report()
        self._publishing_done = threading.Event()
        self._publish_error: list[BaseException] = []

    # -- set-up and tear-down -----------------------------------------------------------------

    def start(self) -> None:
        say(f"starting a broker on {self.broker.bootstrap} (data in {self.broker.data_dir})")
        self.broker.start()
        create_topics(self.settings)
        self.gateway = GatewayProcess(self.workdir / "gateway.log", "--error-rate", "0.1",
                                      "--timeout-rate", "0.01", "--hang-s", "4").start()
        env = {**WORKER_ENV, "ORDERFLOW_EFFECTS_URL": self.gateway.url}
        self.workers = [Worker(self.settings, self.workdir, f"w{i}", **env).start()
                        for i in range(self.options.workers)]
        for worker in self.workers:
            worker.wait_ready(timeout=180)
        say(f"{len(self.workers)} workers ready; gateway at {self.gateway.url}")

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        if self.gateway is not None:
            self.gateway.stop()
        self.broker.stop()

    # -- the run ------------------------------------------------------------------------------

    def run(self) -> Report:
        o = self.options
        made = traffic(o.orders, o.clients, o.seed, prefix="x", duplicate_share=0.05, swap_share=0.07)
        self.report.events = len(made.events)
        self.report.duplicates_sent = made.duplicates
        self.report.swapped = made.swapped
        publisher = threading.Thread(target=self._publish, args=(made.events,), daemon=True)
        publisher.start()
        started = time.monotonic()
        broker_kill_at = started + max(o.kill_every_s * 2.5, len(made.events) / o.rate / 2)
        next_kill = started + o.kill_every_s
        while not (self._publishing_done.is_set() and self.report.worker_kills >= o.min_kills
                   and (not o.broker_kill or self.report.broker_kills)):
            now = time.monotonic()
            if o.broker_kill and not self.report.broker_kills and now >= broker_kill_at:
                self._kill_broker()
            elif now >= next_kill:
                self._kill_a_worker()
                next_kill = now + o.kill_every_s * self.rng.uniform(0.7, 1.3)
            self._supervise()
            time.sleep(0.2)
        publisher.join()
        if self._publish_error:
            raise RuntimeError(f"publishing failed: {self._publish_error[0]}")
        say(f"traffic in and {self.report.worker_kills} workers and {self.report.broker_kills} "
            "broker killed; waiting for every order to settle")
        settle_from = time.monotonic()
        self._all_ready(timeout_s=240)
        self._settle(made.events)
        self.report.settle_s = time.monotonic() - settle_from
        self._check(made.events)
        return self.report

    def _publish(self, events: list[dict[str, Any]]) -> None:
        """Half the clients through the project's publisher (murmur2), half through librdkafka's
        default partitioner (CRC32), at the chosen rate, in publishing order."""
        try:
            ours = Publisher(self.settings)
            theirs = Producer({**client_config(self.settings), "enable.idempotence": True,
                               "acks": "all", "linger.ms": 5})  # librdkafka's default partitioner
            clients = sorted({e["client_id"] for e in events})
            crc32 = set(clients[::2])
            began = time.monotonic()
            for n, event in enumerate(events):
                if event["client_id"] in crc32:
                    theirs.produce(self.settings.events_topic, key=event["client_id"].encode(),
                                   value=Publisher.encode(event))
                    theirs.poll(0)
                else:
                    ours.send(event)
                ahead = began + n / self.options.rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
                if n and n % 5000 == 0:
                    say(f"  … {n} of {len(events)} events published")
            if theirs.flush(300) or not ours.flush(300).ok:
                raise RuntimeError("some events were not delivered")
        except BaseException as exc:
            self._publish_error.append(exc)
        finally:
            self._publishing_done.set()

    def _kill_a_worker(self) -> None:
        worker = self.rng.choice(self.workers)
        worker.kill()
        self.report.worker_kills += 1
        say(f"SIGKILL worker {worker.name} (kill {self.report.worker_kills}); restarting it")
        worker.start()

    def _kill_broker(self) -> None:
        pid = self.broker.pid()
        if pid is None:
            return
        say("SIGKILL the broker; restarting it on its data")
        os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):  # our child: reap it, or it lingers as a
            os.waitpid(pid, 0)                         # zombie that looks alive
        self.broker.pid_file.unlink(missing_ok=True)
        time.sleep(2)
        self.broker.start()
        self.report.broker_kills += 1
        say("the broker is back")

    def _all_ready(self, timeout_s: float) -> None:
        """Wait until every worker is ready, restarting any that exits meanwhile (a worker stuck
        out of its group stops itself after ORDERFLOW_STUCK_AFTER_S, 45 s here)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._supervise()
            if all(self._ready(worker) for worker in self.workers):
                return
            time.sleep(1)
        raise RuntimeError(f"not every worker was ready within {timeout_s:g}s")

    @staticmethod
    def _ready(worker: Worker) -> bool:
        try:
            return worker.get("/ready", timeout=2)[0] == 200
        except OSError:
            return False

    def _say_lag(self) -> None:
        """After a minute without settling: each worker's consumer lag, to see what waits."""
        for worker in self.workers:
            try:
                _status, text = worker.get("/metrics", timeout=5)
            except OSError:
                continue
            lag = [line for line in str(text).splitlines()
                   if line.startswith("orderflow_consumer_lag{") and not line.endswith(" 0.0")]
            say(f"  {worker.name} lag: {'; '.join(lag) or 'none'}")

    def _supervise(self) -> None:
        """What a supervisor does: restart a worker that exited (e.g. started while the broker was
        down, it cannot bootstrap and exits 1)."""
        for worker in self.workers:
            if worker.proc is not None and worker.proc.poll() is not None:
                say(f"worker {worker.name} exited with {worker.proc.returncode}; restarting it")
                self.report.worker_restarts += 1
                worker.start()

    # -- the verdict --------------------------------------------------------------------------

    def _views(self, path: str) -> Any:
        for worker in self.rng.sample(self.workers, len(self.workers)):
            try:
                status, body = worker.get(path, timeout=30)
            except OSError:
                continue
            if status == 200:
                return body
        return None

    def _orders_of(self, client_id: str) -> dict[str, dict[str, Any]]:
        """The client's orders, every page of them."""
        orders: dict[str, dict[str, Any]] = {}
        cursor = None
        while True:
            after = f"&after={cursor}" if cursor else ""
            body = self._views(f"/clients/{quote(client_id, safe='')}/orders?limit=1000{after}")
            orders.update({o["order_id"]: o for o in (body or {}).get("orders", [])})
            cursor = (body or {}).get("next")
            if not cursor:
                return orders

    def _models(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        by_order: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for event in events:
            by_order[event["order_id"]].append(event)
        return {oid: run_model(evs, DEFAULT) for oid, evs in by_order.items()}

    def _settle(self, events: list[dict[str, Any]]) -> None:
        models = self._models(events)
        clients = sorted({e["client_id"] for e in events})
        deadline = time.monotonic() + self.options.settle_timeout_s
        while time.monotonic() < deadline:
            seen: dict[str, dict[str, Any]] = {}
            for client in clients:
                seen.update(self._orders_of(client))
            done = sum(1 for oid, model in models.items()
                       if oid in seen and (seen[oid]["status"], seen[oid]["version"])
                       == (model.status, model.version))
            if done == len(models):
                return
            say(f"  … {done} of {len(models)} orders settled")
            if time.monotonic() > deadline - self.options.settle_timeout_s + 60:
                self._say_lag()
            time.sleep(3)

    def _check(self, events: list[dict[str, Any]]) -> None:
        models = self._models(events)
        clients = sorted({e["client_id"] for e in events})
        seen: dict[str, dict[str, Any]] = {}
        for client in clients:
            seen.update(self._orders_of(client))
        r = self.report
        r.orders = len(models)
        by_id = {e["event_id"]: e for e in events}
        expected_effects: set[str] = set()
        for oid, model in models.items():
            order = seen.get(oid)
            version = -1 if order is None else order["version"]
            applied = [] if order is None else [h["event_id"] for h in order["history"]
                                                if h["outcome"] == "applied"]
            if order is not None and (order["status"], version) == (model.status, model.version) \
                    and len(applied) == len(set(applied)):
                r.right += 1
            elif version < model.version:
                r.lost += 1
                r.wrong.append(f"{oid}: lost (version {version}, model {model.version})")
            else:
                r.applied_twice += 1
                r.wrong.append(f"{oid}: applied twice (version {version}, model {model.version})")
            status: str | None = None
            for event_id in model.applied:  # the effects the model implies, by Idempotency-Key
                kind = by_id[event_id]["type"]
                if kind == "paid" or (kind == "cancelled" and status == "paid"):
                    expected_effects.add(event_id)
                status = DEFAULT.step(status, kind).target  # type: ignore[union-attr]
        assert self.gateway is not None
        applied_counts = Counter(self.gateway.stats()["applied"])
        r.effects_expected = len(expected_effects)
        r.effects_missing = sum(1 for key in expected_effects if applied_counts[key] == 0)
        r.effects_twice = sum(1 for count in applied_counts.values() if count > 1)
        r.effects_unexpected = sum(1 for key in applied_counts if key not in expected_effects)
        rejected = {e for model in models.values() for e in model.rejected}
        letters = values(consume_all(self.settings.bootstrap, self.settings.dlq_topic, 10**9,
                                     timeout_s=10))
        by_letter = Counter(str(letter.get("id")) for letter in letters)
        kinds = {str(letter.get("id")): letter["reason"]["kind"] for letter in letters}
        rejected_ids = {lid for lid, kind in kinds.items() if kind == "rejected"}
        r.letters_expected = len(rejected)
        r.letters_found = len({letter["event"]["event_id"] for letter in letters
                               if str(letter.get("id")) in rejected_ids})
        r.letters_duplicated = sum(count - 1 for count in by_letter.values())
        r.letters_other = dict(Counter(kind for kind in kinds.values() if kind != "rejected"))


def run(options: Options) -> Report:
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="orderflow-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    chaos = Chaos(options, workdir)
    try:
        chaos.start()
        return chaos.run()
    finally:
        chaos.stop()


def write_results(options: Options, report: Report, seconds: float) -> None:
    """Append the table, with the machine and the versions, to bench/RESULTS.md."""
    from importlib.metadata import version

    from streams.tools.localkafka import KAFKA_VERSION

    with (ROOT / "bench" / "RESULTS.md").open("a") as out:
        out.write(
            f"\n## Chaos — {time.strftime('%Y-%m-%d %H:%M')}\n\n"
            f"{options.orders} orders of {options.clients} clients at {options.rate:g} events/s, "
            f"{options.workers} workers, {options.partitions} partitions, a worker SIGKILLed every "
            f"~{options.kill_every_s:g} s, the broker SIGKILLed once; gateway 10% 503, 1% applied then "
            f"hung past the client timeout. Apache Kafka {KAFKA_VERSION} (local KRaft), "
            f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, faust-streaming "
            f"{version('faust-streaming')}; {seconds:.0f} s in all. "
            f"Verdict: {'all right' if report.ok else 'WRONG'}.\n\n"
            f"| measure | result |\n|---|---|\n{report.table()}\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=Options.orders)
    parser.add_argument("--clients", type=int, default=Options.clients)
    parser.add_argument("--rate", type=float, default=Options.rate, help="events per second")
    parser.add_argument("--kill-every", type=float, default=Options.kill_every_s, dest="kill_every_s")
    parser.add_argument("--min-kills", type=int, default=Options.min_kills)
    parser.add_argument("--no-broker-kill", action="store_true")
    parser.add_argument("--seed", type=int, default=Options.seed)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--results", action="store_true", help="append the table to bench/RESULTS.md")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("librdkafka").setLevel(logging.CRITICAL + 1)  # the broker is down on purpose
    options = Options(orders=args.orders, clients=args.clients, rate=args.rate,
                      kill_every_s=args.kill_every_s, min_kills=args.min_kills,
                      broker_kill=not args.no_broker_kill, seed=args.seed, workdir=args.workdir)
    began = time.monotonic()
    report = run(options)
    print(report.table())
    for line in report.wrong[:20]:
        print(f"  {line}")
    print(f"chaos: {'all right' if report.ok else 'WRONG'} in {time.monotonic() - began:.0f}s")
    if args.results:
        write_results(options, report, time.monotonic() - began)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
