"""The `orderflow` command: a local Kafka, topics, publishing, and the tools around the workers."""

from __future__ import annotations

import argparse
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


def _kafka(args: argparse.Namespace, _settings: Settings) -> int:
    from streams.localkafka import LocalKafka

    broker = LocalKafka(port=args.port, data_dir=Path(args.data_dir))
    if args.action == "start":
        if broker.start():
            print(f"kafka started: listening on {broker.bootstrap}, log {broker.log_file}")
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
    from streams.topics import create_topics

    for name, outcome in create_topics(settings).items():
        print(f"{name}: {outcome} ({settings.partitions} partitions)")
    return 0


def _publish(args: argparse.Namespace, settings: Settings) -> int:
    from streams.publisher import print_progress, publish_lines

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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="orderflow", description=__doc__)
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
    kafka.set_defaults(handler=_kafka)

    topics = commands.add_parser("topics", help="create orderflow's topics")
    topics.add_argument("action", choices=["create"])
    topics.set_defaults(handler=_topics)

    publish = commands.add_parser("publish", help="publish JSON-lines events to orders.events")
    publish.add_argument("file", nargs="?", default="-", help="a JSON-lines file, or - for stdin")
    publish.set_defaults(handler=_publish)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args, Settings.from_env())
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
