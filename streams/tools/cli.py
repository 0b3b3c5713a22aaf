"""The `orderflow` command: a local Kafka, topics, publishing, and the tools around the workers."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from streams.config import Settings
from streams.errors import OrderflowError

Handler = Callable[[argparse.Namespace, Settings], int]


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line, without the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _kafka(args: argparse.Namespace, settings: Settings) -> int:
    from streams.tools.localkafka import SCRAM, LocalKafka

    sasl = args.sasl or settings.security_protocol.startswith("SASL")
    if sasl and not (settings.sasl_username and settings.sasl_password):
        raise OrderflowError("kafka --sasl: set KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD first")
    broker = LocalKafka(port=args.port, data_dir=Path(args.data_dir),
                        sasl_username=settings.sasl_username if sasl else "",
                        sasl_password=settings.sasl_password if sasl else "")
    if args.action == "start":
        if broker.start():
            print(f"kafka started: listening on {broker.bootstrap}, log {broker.log_file}")
            if sasl:
                print(f"SASL only ({SCRAM} over plaintext, user {settings.sasl_username!r}); clients "
                      f"need KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT KAFKA_SASL_MECHANISM={SCRAM}")
        else:
            print(f"kafka already running on {broker.bootstrap} (log {broker.log_file})")
    elif args.action == "stop":
        print("kafka stopped" if broker.stop() else "kafka was not running")
    else:
        pid = broker.pid()
        if pid is not None and broker.answers():
            print(f"kafka running: pid {pid}, listening on {broker.bootstrap}, data {broker.data_dir}")
        elif pid is not None:
            print(f"kafka process {pid} is up but does not answer on {broker.bootstrap} yet")
            return 1
        else:
            print(f"kafka not running (data {broker.data_dir})")
            return 3
    return 0


def _topics(args: argparse.Namespace, settings: Settings) -> int:
    from streams.tools.topics import create_topics

    for name, outcome in create_topics(settings).items():
        print(f"{name}: {outcome} ({settings.partitions} partitions)")
    return 0


def _publish(args: argparse.Namespace, settings: Settings) -> int:
    from streams.tools.publisher import print_progress, publish_lines

    if args.file == "-":
        report = publish_lines(settings, sys.stdin, print_progress)
    else:
        try:
            with open(args.file, encoding="utf-8") as stream:
                report = publish_lines(settings, stream, print_progress)
        except OSError as exc:
            raise OrderflowError(f"cannot read {args.file}: {exc.strerror}") from None
    for problem in report.problems:
        print(problem, file=sys.stderr)
    print(report.summary())
    return 0 if report.ok else 1


def _gateway(args: argparse.Namespace, _settings: Settings) -> int:
    from streams.tools.gateway import Faults, serve

    try:
        faults = Faults(latency_s=args.latency_ms / 1000, error_rate=args.error_rate,
                        timeout_rate=args.timeout_rate, throttle_rate=args.throttle_rate,
                        retry_after_s=args.retry_after_s, hang_s=args.hang_s).check()
    except ValueError as exc:
        raise OrderflowError(f"gateway: {exc}") from None
    serve(args.host, args.port, faults, args.seed)
    return 0


def _dlq(args: argparse.Namespace, settings: Settings) -> int:
    from streams.tools import dlq

    read = dlq.read_letters(settings, lambda n: print(f"  … {n} dead letters read", file=sys.stderr))
    letters = dlq.unique(read)
    if args.action == "list":
        chosen = [x for x in letters if args.kind is None or x.kind == args.kind][-args.limit:]
        print(dlq.table(chosen))
        repeats = f" ({len(read) - len(letters)} repeated records of the same failures not counted)" \
            if len(read) > len(letters) else ""
        print(f"{len(chosen)} shown of {len(letters)} dead letters on {settings.dlq_topic}{repeats}")
        return 0
    if not args.all and not args.event_id:
        raise OrderflowError("dlq replay: name the letters with --event-id ID ... or --all")
    replay = dlq.choose(letters, None if args.all else args.event_id, args.kind)
    for line in replay.skipped:
        print(f"skipped {line}", file=sys.stderr)
    if args.dry_run:
        for event in replay.events:
            print(f"would replay {event['event_id']} ({event['type']} of order {event['order_id']})")
        print(f"dry run: {len(replay.events)} events would be replayed to {settings.events_topic}, "
              f"{len(replay.skipped)} skipped")
        return 0
    sent = dlq.send(settings, replay.events)
    print(f"replayed {sent} events to {settings.events_topic}, {len(replay.skipped)} skipped")
    return 0


def _changes(args: argparse.Namespace, settings: Settings) -> int:
    from streams.changes import new_versions, read_changes

    records = read_changes(settings, follow=args.follow, idle=lambda: sys.stdout.flush())
    if args.order is not None:
        records = (r for r in records if r.get("order_id") == args.order)
    if not args.repeats:
        records = new_versions(records)
    shown = 0
    for record in records:
        print(json.dumps(record, separators=(",", ":")))
        shown += 1
    print(f"{shown} changes on {settings.changes_topic}", file=sys.stderr)
    return 0


def _orders(args: argparse.Namespace, settings: Settings) -> int:
    from streams.tools import terminal

    if args.action == "get":
        if not args.order_id or args.client:
            raise OrderflowError("orders get: give one ORDER_ID (orders list --client C lists a client's)")
        print(json.dumps(terminal.order(args.url, args.order_id), indent=2))
        return 0
    if args.order_id or not args.client:
        raise OrderflowError("orders list: give --client CLIENT_ID (orders get ORDER_ID shows one order)")
    shown = 0
    for view in terminal.client_orders(args.url, args.client, args.status):
        print(json.dumps(view, separators=(",", ":")) if args.json else terminal.order_line(view))
        shown += 1
        if shown >= args.limit:
            break
    status = f" in status {args.status}" if args.status else ""
    print(f"{shown} orders of client {args.client}{status} (newest first)", file=sys.stderr)
    return 0


def _lifecycle(args: argparse.Namespace, settings: Settings) -> int:
    from streams.core.lifecycle import load
    from streams.web import drawing

    if args.action == "check":
        if not args.path:
            raise OrderflowError("lifecycle check: give the lifecycle FILE to check")
        checked = load(args.path)  # the worker's own start-up checks: a LifecycleError says what
        print(f"{args.path}: ok: {len(checked.statuses)} statuses, {len(checked.transitions)} "
              f"transitions, {len(checked.final)} final, {len(checked.timeouts)} timeouts")
        return 0
    if args.path:
        raise OrderflowError("lifecycle: a FILE goes with 'check'; to draw one, use --file FILE")
    lifecycle = load(args.file or settings.lifecycle_file or None)
    print(drawing.mermaid(lifecycle) if args.format == "mermaid" else drawing.dot(lifecycle), end="")
    return 0


def _simulate(args: argparse.Namespace, settings: Settings) -> int:
    import uuid

    from streams.tools.simulate import publish, traffic, write_expected

    prefix = args.prefix or f"sim{uuid.uuid4().hex[:6]}-"
    made = traffic(args.orders, args.clients, args.seed, prefix, duplicate_share=args.duplicates,
                   swap_share=args.out_of_order)
    write_expected(made, Path(args.expected))
    print(f"{args.orders} orders of {args.clients} clients: {len(made.events)} events, {made.duplicates} "
          f"duplicates, {made.swapped} out-of-order pairs, {len(made.impossible)} impossible events; "
          f"expected outcomes in {args.expected}", file=sys.stderr)
    sent = publish(settings, made, args.rate)
    print(f"published {sent} events to {settings.events_topic}")
    return 0 if sent == len(made.events) else 1


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from streams.tools.demo import Options, run

    return run(settings, Options(orders=args.orders, clients=args.clients, rate=args.rate,
                                 error_rate=args.error_rate, web_port=args.web_port,
                                 workdir=Path(args.workdir), timeout_s=args.timeout, stay=args.stay))


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a rate between 0 and 1")
    return value


def _at_least(kind: type, minimum: float) -> Callable[[str], float]:
    """An argparse type: a number of `kind`, at least `minimum` (argparse names `kind` on error)."""
    def parse(text: str) -> float:
        value = kind(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text} must be at least {minimum}")
        return value  # type: ignore[no-any-return]
    parse.__name__ = kind.__name__
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="orderflow", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show the Kafka client's own log lines")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    kafka = commands.add_parser("kafka", help="a local single-node Apache Kafka (KRaft)")
    kafka.add_argument("action", choices=["start", "stop", "status"])
    kafka.add_argument("--port", type=int, default=int(os.environ.get("ORDERFLOW_KAFKA_PORT", 9092)))
    kafka.add_argument(
        "--data-dir",
        default=os.environ.get(
            "ORDERFLOW_KAFKA_DATA", str(Path.home() / ".local" / "share" / "orderflow" / "kafka")
        ),
    )
    kafka.add_argument("--sasl", action="store_true",
                       help="SASL only (SCRAM-SHA-512), user KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD")
    kafka.set_defaults(handler=_kafka)

    topics = commands.add_parser("topics", help="create orderflow's topics")
    topics.add_argument("action", choices=["create"])
    topics.set_defaults(handler=_topics, needs_kafka=True)

    publish = commands.add_parser("publish", help="publish JSON-lines events to orders.events")
    publish.add_argument("file", nargs="?", default="-", help="a JSON-lines file, or - for stdin")
    publish.set_defaults(handler=_publish, needs_kafka=True)

    gateway = commands.add_parser("gateway", help="a downstream HTTP service that fails on purpose")
    gateway.add_argument("--host", default="127.0.0.1")
    gateway.add_argument("--port", type=int, default=8080)
    gateway.add_argument("--latency-ms", type=_at_least(float, 0), default=0.0)
    gateway.add_argument("--error-rate", type=_rate, default=0.0, help="share of calls answered 503")
    gateway.add_argument("--timeout-rate", type=_rate, default=0.0,
                         help="share of calls applied but answered only after --hang-s")
    gateway.add_argument("--throttle-rate", type=_rate, default=0.0,
                         help="share of calls answered 429 with Retry-After")
    gateway.add_argument("--retry-after-s", type=_at_least(float, 0), default=1.0)
    gateway.add_argument("--hang-s", type=_at_least(float, 0), default=30.0)
    gateway.add_argument("--seed", type=int, default=None)
    gateway.set_defaults(handler=_gateway)

    dlq = commands.add_parser("dlq", help="list or replay dead letters")
    dlq.add_argument("action", choices=["list", "replay"])
    dlq.add_argument("--kind", help="only letters of this reason kind (e.g. effect_failed)")
    dlq.add_argument("--limit", type=_at_least(int, 1), default=50, help="list: the newest N (default 50)")
    dlq.add_argument("--event-id", nargs="+", help="replay: these events")
    dlq.add_argument("--all", action="store_true", help="replay: every replayable letter")
    dlq.add_argument("--dry-run", action="store_true", help="replay: only show what would be sent")
    dlq.set_defaults(handler=_dlq, needs_kafka=True)

    changes = commands.add_parser("changes", help="print the change feed (orders.changes)")
    changes.add_argument("action", choices=["tail"])
    changes.add_argument("--order", help="only this order's changes")
    changes.add_argument("--follow", "-f", action="store_true", help="keep printing new changes")
    changes.add_argument("--repeats", action="store_true",
                         help="also print records repeated after a crash (same order and version)")
    changes.set_defaults(handler=_changes, needs_kafka=True)

    orders = commands.add_parser("orders", help="an order, or a client's orders, from any worker's views")
    orders.add_argument("action", choices=["get", "list"])
    orders.add_argument("order_id", nargs="?", help="get: the order's id")
    orders.add_argument("--client", help="list: the client's id")
    orders.add_argument("--status", help="list: only orders in this status")
    orders.add_argument("--limit", type=_at_least(int, 1), default=1000,
                        help="list: at most N (default 1000)")
    orders.add_argument("--json", action="store_true", help="list: one JSON view per line")
    orders.add_argument("--url", default=os.environ.get("ORDERFLOW_URL", "http://localhost:6066"),
                        help="a worker's web address (default: ORDERFLOW_URL or http://localhost:6066)")
    orders.set_defaults(handler=_orders)

    lifecycle = commands.add_parser(
        "lifecycle", help="draw the transitions table, or check a lifecycle file (lifecycle check FILE)")
    lifecycle.add_argument("action", nargs="?", choices=["draw", "check"], default="draw")
    lifecycle.add_argument("path", nargs="?", help="check: the lifecycle JSON file")
    lifecycle.add_argument("--format", choices=["mermaid", "dot"], default="mermaid")
    lifecycle.add_argument("--file", help="a lifecycle JSON file (default: ORDERFLOW_LIFECYCLE or the "
                                          "contract's lifecycle)")
    lifecycle.set_defaults(handler=_lifecycle)

    simulate = commands.add_parser("simulate", help="publish realistic order traffic")
    simulate.add_argument("--orders", type=_at_least(int, 1), default=1000)
    simulate.add_argument("--clients", type=_at_least(int, 1), default=100)
    simulate.add_argument("--rate", type=_at_least(float, 0), default=500.0,
                          help="events per second (0: as fast as possible)")
    simulate.add_argument("--duplicates", type=_rate, default=0.15, help="share of events sent twice")
    simulate.add_argument("--out-of-order", type=_rate, default=0.3,
                          help="share of orders with two neighbouring events swapped")
    simulate.add_argument("--seed", type=int, default=1)
    simulate.add_argument("--prefix", default="", help="order id prefix (default: a fresh run id)")
    simulate.add_argument("--expected", default="expected.jsonl",
                          help="where to write each order's expected final status and version")
    simulate.set_defaults(handler=_simulate, needs_kafka=True)

    demo = commands.add_parser("demo", help="run everything locally and check the outcome")
    demo.add_argument("--orders", type=_at_least(int, 1), default=500)
    demo.add_argument("--clients", type=_at_least(int, 1), default=50)
    demo.add_argument("--rate", type=_at_least(float, 0), default=300.0, help="events per second")
    demo.add_argument("--error-rate", type=_rate, default=0.1, help="the gateway's share of 503s")
    demo.add_argument("--web-port", type=int, default=6066, help="first worker's port (second: +1)")
    demo.add_argument("--workdir", default="./orderflow-demo", help="logs, state and expected outcomes")
    demo.add_argument("--timeout", type=_at_least(float, 1), default=180.0,
                      help="seconds to wait for every order to end right")
    demo.add_argument("--stay", action="store_true", help="keep running after the verdict until Ctrl-C")
    demo.set_defaults(handler=_demo)
    return parser


def _logging(verbose: bool) -> None:
    """The CLI speaks in its own voice: the Kafka client's own log lines only with -v."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not verbose:
        logging.getLogger("librdkafka").setLevel(logging.CRITICAL + 1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    _logging(args.verbose)
    try:
        settings = Settings.from_env()
        if getattr(args, "needs_kafka", False):
            from streams.kafka_clients import preflight

            preflight(settings)
        return handler(args, settings)
    except OrderflowError as exc:
        print(f"orderflow: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("orderflow: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a Kafka client error, say: one line, not a traceback
        print(f"orderflow: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
