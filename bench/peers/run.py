"""Peers side by side, in one run, on one broker and one topic per workload.

    python bench/peers/run.py [--orders 40000] [--duplicates 0.0] [--effect-orders 48000]
                              [--quix-effect-events 5000] [--latency-ms 20] [--no-effects]
                              [--before COMMIT] [--rounds N] [--no-kafka-streams]

CPU-bound (every order's five lifecycle events, 8 partitions, no effects): the Python ceiling
(confluent-kafka consume + `json.loads`), a bare Faust agent (decode only), the orderflow worker,
Quix Streams doing orderflow's per-order work (bench/peers/quix_app.py: the same decode and
state machine, RocksDB state with its changelog, dedup by event id, parking, history), and Kafka
Streams doing it too (bench/peers/kstreams/: the same rules written again in Java, a cached
RocksDB store with its changelog; built with Maven and javac on first use, bench/peers/kstreams.py;
`--no-kafka-streams` leaves it out).
Effect-bound (`--effect-orders` orders of five events, one `shipments` effect per order through
`orderflow gateway` at `--latency-ms`): orderflow with its default lanes, and Quix Streams and
Kafka Streams, timed over the topic's first `--quix-effect-events` (they call one effect at a
time, 50 a second at 20 ms: the whole topic would take them minutes and tell nothing more).
48,000 orders by default: the 3,000 issue 13 measured with last under two seconds for orderflow,
and 12,000 (the default until 2026-12-05) about four, against a clock of committed offsets (0.5 s
apart, looked at every 0.25 s): a round could be off by a tenth either way. 48,000 last about
eighteen seconds, and the rate is the steady one, not a burst's start and end. Then orderflow's
rounds again against a bare responder (bench/peers/responder.py, the same latency without the
gateway's own cost), so the worker's share of what is missing is told from the gateway's.

With `--before COMMIT`, the orderflow worker of that commit (its files as `git archive` gives
them, run with this machine's packages) runs the CPU-bound workload too, right after today's, so
a speed-up is a ratio measured in one run (issue 13 measures against 72571f5, the code it was
filed on). With `--rounds N`, orderflow and that commit run N times each, alternating on the same
topic (and orderflow's effect-bound run N times, on a fresh topic each): this machine's speed
swings by a third within the hour, so one pair is one draw. The tables then show each one's
median run, and a table of the rounds gives every pair's ratio.

Each peer runs as its own process with a fresh consumer group and is timed from its first
committed offset to its commits covering the topic (the ceiling, a second's work, times itself).
Quix Streams runs in a virtualenv of its own (bench/peers/.venv, made on first use from
bench/peers/requirements.txt: it pins another confluent-kafka). Appends the table to
bench/RESULTS.md and draws bench/peers/peers.png.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from bench.effects import start_gateway  # noqa: E402
from bench.peers import kstreams  # noqa: E402
from bench.peers.effect_ceiling import Ceiling as EffectCeiling  # noqa: E402
from bench.peers.effect_ceiling import measure as measure_effect_ceiling  # noqa: E402
from bench.run import KINDS, fresh_topics, run_variant, time_by_commits  # noqa: E402
from streams import compiled  # noqa: E402
from streams.config import Settings  # noqa: E402
from streams.tools.localkafka import KAFKA_VERSION, LocalKafka, cache_root  # noqa: E402
from streams.tools.publisher import Publisher  # noqa: E402
from tests.conftest import free_port, free_port_pair  # noqa: E402
from tests.helpers import make_event  # noqa: E402

VENV = Path(os.environ.get("PEERS_VENV", HERE / ".venv"))
REQUIREMENTS = HERE / "requirements.txt"


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def peers_python() -> Path:
    """The peers virtualenv's python, made (or remade when requirements.txt changed) first."""
    python = VENV / "bin" / "python"
    stamp = VENV / "requirements.sha256"
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    say(f"making the peers virtualenv in {VENV} ({', '.join(requirements())})")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "-r", str(REQUIREMENTS)], check=True)
    stamp.write_text(wanted)
    return python


def requirements() -> list[str]:
    return [line.strip() for line in REQUIREMENTS.read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def orders_events(orders: int, duplicates: float, prefix: str) -> list[dict]:
    """Each order's five lifecycle events in order; `duplicates` of them sent a second time."""
    out: list[dict] = []
    for n in range(orders):
        for kind in KINDS:
            event = make_event(f"{prefix}{n}", kind, client_id=f"c{n % 1000}")
            out.append(event)
            if duplicates and (n * len(KINDS) + KINDS.index(kind)) % round(1 / duplicates) == 0:
                out.append(event)
    return out


def publish(settings: Settings, events: list[dict]) -> int:
    say(f"publishing {len(events):,} events to {settings.events_topic}")
    report = Publisher(settings).publish(events)
    if not report.ok:
        raise SystemExit(f"publishing failed: {report.problems[:3]}")
    return len(events)


def ceiling(settings: Settings, total: int) -> dict:
    env = {**os.environ, "KAFKA_BOOTSTRAP": settings.bootstrap, "PEERS_TOPIC": settings.events_topic,
           "PEERS_GROUP": f"peers-ceiling-{uuid.uuid4().hex[:6]}"}
    say("  confluent-kafka + json.loads")
    out = subprocess.run([sys.executable, str(HERE / "ceiling.py"), str(total)], env=env, check=True,
                         capture_output=True, text=True, timeout=600).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return {"name": "confluent-kafka consume + json.loads (the Python ceiling)", **result,
            "rate": result["events"] / result["seconds"]}


def quix(python: Path, settings: Settings, total: int, workdir: Path, name: str,
         effects_url: str = "") -> dict:
    group = f"peers-quix-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "KAFKA_BOOTSTRAP": settings.bootstrap, "PEERS_TOPIC": settings.events_topic,
           "PEERS_DLQ_TOPIC": settings.dlq_topic, "PEERS_GROUP": group,
           "PEERS_STATE_DIR": str(workdir / group), "PEERS_EFFECTS_URL": effects_url}
    env.pop("PYTHONPATH", None)
    log = workdir / f"{group}.log"
    proc = subprocess.Popen([str(python), str(HERE / "quix_app.py")], cwd=ROOT, env=env,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    return time_by_commits(name, proc, log, settings, group, total)


def kafka_streams(home: Path, settings: Settings, total: int, workdir: Path, name: str,
                  effects_url: str = "") -> dict:
    proc, group, log = kstreams.start(home, settings.bootstrap, settings.events_topic, settings.dlq_topic,
                                      workdir, effects_url)
    return time_by_commits(name, proc, log, settings, group, total)


def checkout(commit: str, into: Path) -> tuple[str, Path]:
    """The files of `commit` (`git archive`) in `into`: (its short id, the directory)."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", f"{commit}^{{commit}}"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.strip()
    except subprocess.CalledProcessError:
        raise SystemExit(f"--before {commit}: not a commit of this repository") from None
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", sha], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    say(f"the orderflow of {sha} is in {into}")
    return sha, into


def versions(python: Path, with_kafka_streams: bool) -> str:
    quix_version = subprocess.run([str(python), "-c", "import quixstreams; print(quixstreams.__version__)"],
                                  capture_output=True, text=True, check=True).stdout.strip()
    ours = {name: metadata.version(name) for name in ("faust-streaming", "aiokafka", "confluent-kafka")}
    return (f"Python {platform.python_version()}; faust-streaming {ours['faust-streaming']}, aiokafka "
            f"{ours['aiokafka']}, confluent-kafka {ours['confluent-kafka']} (orderflow's); orderflow's hot "
            f"path {compiled.status}; Quix Streams "
            f"{quix_version} in its own virtualenv; Apache Kafka {KAFKA_VERSION} (local KRaft)"
            + (f"; Kafka Streams {kstreams.version()} on {java_version()}" if with_kafka_streams else ""))


def java_version() -> str:
    """`java -version`'s first line without its release date, e.g. 'openjdk version "17.0.15"'."""
    shown = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()
    return re.sub(r"\s+\d{4}-\d{2}-\d{2}.*$", "", shown[0]) if shown else "Java (version unknown)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=40_000, help="orders of the CPU-bound workload")
    parser.add_argument("--duplicates", type=float, default=0.0, help="share of events sent twice")
    parser.add_argument("--effect-orders", type=int, default=48_000)
    parser.add_argument("--quix-effect-events", type=int, default=5_000,
                        help="events Quix Streams is timed over in the effect-bound workload")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--no-effects", action="store_true", help="only the CPU-bound workload")
    parser.add_argument("--before", metavar="COMMIT", default="",
                        help="also run the orderflow worker of this commit on the CPU-bound workload")
    parser.add_argument("--no-kafka-streams", action="store_true",
                        help="leave out the Kafka Streams peer (it needs Java 17 and Maven)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="runs of orderflow (and of --before), alternating; the tables show the median")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "RESULTS.md",
                        help="the Markdown file the table is appended to")
    parser.add_argument("--plot", type=Path, default=HERE / "peers.png", help="the PNG to draw")
    args = parser.parse_args()
    if args.orders < 1000 or not 0 <= args.duplicates < 1:
        parser.error("at least 1000 orders, and a duplicate share in [0, 1)")
    if args.effect_orders < 1 or args.quix_effect_events < 1:
        parser.error("--effect-orders and --quix-effect-events must be at least 1")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    python = peers_python()
    streams_home = None if args.no_kafka_streams else kstreams.build(cache_root())
    workdir = Path(tempfile.mkdtemp(prefix="orderflow-peers-"))
    before = checkout(args.before, workdir / "before") if args.before else None
    broker = LocalKafka(port=free_port_pair(), data_dir=workdir / "kafka")
    broker.start()
    gateway = responder = None
    try:
        cpu = fresh_topics(broker)
        total = publish(cpu, orders_events(args.orders, args.duplicates, "o"))
        results = [
            ceiling(cpu, total),
            run_variant("bare Faust agent, decode only", "bench.baseline_apps:bare", cpu, total, workdir),
            quix(python, cpu, total, workdir, "Quix Streams, the same per-order work"),
        ]
        if streams_home is not None:
            results.append(kafka_streams(streams_home, cpu, total, workdir,
                                         "Kafka Streams, the same per-order work"))
        ours: list[dict] = []
        earlier: list[dict] = []
        for round_number in range(1, args.rounds + 1):  # each round: orderflow, then the earlier code
            if args.rounds > 1:
                say(f"round {round_number} of {args.rounds}")
            ours.append(run_variant("orderflow worker", "streams.app", cpu, total, workdir))
            if before is not None:
                earlier.append(run_variant(f"orderflow worker of {before[0]}", "streams.app", cpu, total,
                                           workdir, root=before[1]))
        results.insert(2, median_run(ours))
        if earlier:
            results.append(median_run(earlier))
        effect_results: list[dict] = []
        effect_rounds: list[dict] = []
        gateway_alone: EffectCeiling | None = None
        responder_rounds: list[dict] = []
        responder_alone: EffectCeiling | None = None
        if not args.no_effects:
            port = free_port()
            gateway = start_gateway(port, args.latency_ms, workdir / "gateway.log")
            url = f"http://127.0.0.1:{port}"
            lanes = str(Settings().lanes)
            say(f"the gateway alone: {lanes} callers, no Kafka")
            gateway_alone = measure_effect_ceiling(url, Settings().lanes)
            effect_rounds, bound, effect_total = orderflow_effect_rounds(
                broker, url, f"orderflow worker, {lanes} lanes", "e", args, workdir)
            effect_results = [
                median_run(effect_rounds),
                quix(python, bound, min(effect_total, args.quix_effect_events), workdir,
                     "Quix Streams (synchronous calls)", url),
            ]
            if streams_home is not None:
                effect_results.append(kafka_streams(
                    streams_home, bound, min(effect_total, args.quix_effect_events), workdir,
                    "Kafka Streams (synchronous calls)", url))
            gateway.terminate()
            gateway.wait(10)
            gateway = None
            # the same rounds against a bare responder: the worker's share of what is missing
            port = free_port()
            responder = start_responder(port, args.latency_ms)
            url = f"http://127.0.0.1:{port}"
            say(f"the bare responder alone: {lanes} callers, no Kafka")
            responder_alone = measure_effect_ceiling(url, Settings().lanes)
            responder_rounds, _, _ = orderflow_effect_rounds(
                broker, url, f"orderflow worker, {lanes} lanes, bare responder", "r", args, workdir)
            for r in [*effect_results, *effect_rounds, *responder_rounds]:
                r["effects_per_s"] = r["rate"] / len(KINDS)  # one effect per order of five events
    finally:
        for service in (gateway, responder):
            if service is not None:
                service.terminate()
                service.wait(10)
        broker.stop()
    write(results, effect_results, args, total, versions(python, streams_home is not None), python,
          Rounds(ours, earlier, effect_rounds, responder_rounds), gateway_alone, responder_alone)


def orderflow_effect_rounds(broker: LocalKafka, url: str, name: str, prefix: str,
                            args: argparse.Namespace, workdir: Path) -> tuple[list[dict], Settings, int]:
    """`args.rounds` effect-bound runs of orderflow calling `url`, each over fresh orders on a
    fresh topic (a service remembers the keys it answered): the runs, and the last topic's settings
    and event count (the peers run on that topic after them)."""
    runs: list[dict] = []
    for round_number in range(1, args.rounds + 1):
        bound = fresh_topics(broker)
        total = publish(bound, orders_events(args.effect_orders, 0.0, f"{prefix}{round_number}-"))
        runs.append(run_variant(name, "streams.app", bound, total, workdir, ORDERFLOW_EFFECTS_URL=url))
    return runs, bound, total


def start_responder(port: int, latency_ms: float) -> subprocess.Popen[bytes]:
    """bench/peers/responder.py on `port`, once it takes connections."""
    proc = subprocess.Popen([sys.executable, str(HERE / "responder.py"), str(port), str(latency_ms)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the bare responder did not start")


def median_run(runs: list[dict]) -> dict:
    """The run whose rate is the median (the lower of the two middle ones for an even count)."""
    return sorted(runs, key=lambda r: r["rate"])[(len(runs) - 1) // 2]


class Rounds(NamedTuple):
    """Every run of the alternating rounds (one each without --rounds)."""

    ours: list[dict]
    earlier: list[dict]
    effects: list[dict]
    responder: list[dict]  # the effect-bound rounds against bench/peers/responder.py


def rounds_table(rounds: Rounds, lanes_allow: float) -> list[str]:
    """One row per round: orderflow, the earlier commit, their ratio, the effect-bound run."""
    if len(rounds.ours) < 2:
        return []
    lines = ["", f"The {len(rounds.ours)} rounds, in the order they ran (each round: orderflow, then "
             "the earlier commit, on the same topic; the effect-bound runs came after all of them):", "",
             "| round | orderflow events/s (CPU µs) | earlier commit events/s (CPU µs) | ratio | "
             "effect-bound effects/s |", "|---|---|---|---|---|"]
    ratios = []
    for n, ours in enumerate(rounds.ours):
        earlier = rounds.earlier[n] if n < len(rounds.earlier) else None
        effect = rounds.effects[n] if n < len(rounds.effects) else None
        ratio = ours["rate"] / earlier["rate"] if earlier else None
        if ratio is not None:
            ratios.append(ratio)
        lines.append(
            f"| {n + 1} | {ours['rate']:,.0f} ({ours['cpu_us']:.0f}) | "
            + (f"{earlier['rate']:,.0f} ({earlier['cpu_us']:.0f}) | {ratio:.2f}x | " if earlier
               else "- | - | ")
            + (f"{effect['effects_per_s']:,.0f} ({effect['effects_per_s'] / lanes_allow:.0%}) |"
               if effect else "- |"))
    if ratios:
        lines.append(f"\nRatios of the rounds: {min(ratios):.2f}x to {max(ratios):.2f}x, median "
                     f"{statistics.median(ratios):.2f}x.")
    return lines


def write(results: list[dict], effect_results: list[dict], args: argparse.Namespace, total: int,
          versions_line: str, python: Path, rounds: Rounds,
          gateway_alone: EffectCeiling | None = None, responder_alone: EffectCeiling | None = None) -> None:
    by_name = {r["name"]: r for r in results}
    ours = by_name["orderflow worker"]
    lines = [
        f"\n## Peers side by side (bench/peers/run.py) — {time.strftime('%Y-%m-%d %H:%M')}",
        "",
        f"CPU-bound: {total:,} events over {args.orders:,} orders (5 lifecycle events each, "
        f"duplicates {args.duplicates:.0%}), 8 partitions, one process each, one after another on "
        f"one broker and one topic; {platform.node()}, {os.cpu_count()} cores; {versions_line}.",
        "",
        "| system | events | seconds | events/s | CPU µs/event | orderflow ÷ it |",
        "|---|---|---|---|---|---|",
        *[f"| {r['name']} | {r['events']:,} | {r['seconds']:.1f} | {r['rate']:,.0f} | {r['cpu_us']:.0f} | "
          f"{ours['rate'] / r['rate']:.2f}x |" for r in results],
    ]
    earlier = [r for r in results if r["name"].startswith("orderflow worker of ")]
    lines += [f"\nThis orderflow against the {r['name']}: {ours['rate'] / r['rate']:.2f}x the events/s, "
              f"{ours['cpu_us'] / r['cpu_us']:.2f}x the CPU per event." for r in earlier]
    if effect_results:
        lanes_allow = Settings().lanes / (args.latency_ms / 1000)
        lines += [
            "",
            f"Effect-bound: {args.effect_orders:,} orders x 5 events, one `shipments` effect per order "
            f"through `orderflow gateway` at {args.latency_ms:g} ms; {Settings().lanes} lanes at that "
            f"latency allow {lanes_allow:,.0f} effects/s. Quix Streams is timed over the topic's first "
            f"{args.quix_effect_events:,} events (it calls one effect at a time).",
            "",
            "| system | events | seconds | events/s | effects/s | CPU µs/event |",
            "|---|---|---|---|---|---|",
            *[f"| {r['name']} | {r['events']:,} | {r['seconds']:.1f} | {r['rate']:,.0f} | "
              f"{r['effects_per_s']:,.0f} ({r['effects_per_s'] / lanes_allow:.0%} of the lanes' bound) | "
              f"{r['cpu_us']:.0f} |" for r in effect_results],
        ]
        if gateway_alone is not None:
            alone = gateway_alone.calls_per_s
            lines += ["", "The gateway alone (bench/peers/effect_ceiling.py: "
                      f"{gateway_alone.callers} callers through orderflow's HTTP client, no Kafka, no "
                      "other work), measured before the rounds: "
                      f"{alone:,.0f} effects/s ({alone / lanes_allow:.0%} of the lanes' bound), "
                      f"{gateway_alone.mean_ms:.1f} ms a call on average, p99 {gateway_alone.p99_ms:.1f} ms; "
                      f"orderflow's median round got {effect_results[0]['effects_per_s'] / alone:.0%} of it."]
        if responder_alone is not None and rounds.responder:
            alone = responder_alone.calls_per_s
            shares = ", ".join(f"{r['effects_per_s']:,.0f} ({r['effects_per_s'] / lanes_allow:.0%})"
                               for r in rounds.responder)
            lines += ["", "Against a bare responder instead of the gateway (bench/peers/responder.py: every "
                      f"POST answered `200` {args.latency_ms:g} ms after its first byte, no framework, "
                      "idempotency or faults), after the gateway's rounds: alone "
                      f"{alone:,.0f} effects/s ({alone / lanes_allow:.0%} of the lanes' bound), "
                      f"{responder_alone.mean_ms:.1f} ms a call on average; orderflow, round by round: "
                      f"{shares} effects/s."]
    lines += rounds_table(rounds, Settings().lanes / (args.latency_ms / 1000))
    lines += ["", f"![peers]({os.path.relpath(args.plot, args.results.parent)})"]
    text = "\n".join(lines) + "\n"
    print(text)
    with args.results.open("a") as out:
        out.write(text)
    data = args.plot.with_suffix(".json")
    data.write_text(json.dumps({"cpu": results, "effects": effect_results}, indent=1))
    subprocess.run([str(python), str(HERE / "plot.py"), str(data), str(args.plot)], check=True)


if __name__ == "__main__":
    main()
