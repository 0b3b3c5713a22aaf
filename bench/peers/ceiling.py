"""The Python ceiling: confluent-kafka consume + `json.loads`, nothing else (bench/peers/run.py).

Prints one JSON line: events, seconds and CPU µs/event, timed from the first message to the last,
since the whole topic is read in about a second (too short for the committed-offset clock the other
peers are timed with).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

from confluent_kafka import Consumer


def main() -> None:
    total = int(sys.argv[1])
    consumer = Consumer({"bootstrap.servers": os.environ["KAFKA_BOOTSTRAP"],
                         "group.id": os.environ["PEERS_GROUP"], "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    consumer.subscribe([os.environ["PEERS_TOPIC"]])
    done, started, cpu0 = 0, 0.0, 0.0
    while done < total:
        for message in consumer.consume(num_messages=10_000, timeout=1.0):
            if message.error():
                continue
            if not started:
                started = time.monotonic()
                usage = resource.getrusage(resource.RUSAGE_SELF)
                cpu0 = usage.ru_utime + usage.ru_stime
            json.loads(message.value())
            done += 1
    seconds = time.monotonic() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    consumer.close()
    print(json.dumps({"events": done, "seconds": seconds,
                      "cpu_us": (usage.ru_utime + usage.ru_stime - cpu0) / done * 1e6}))


if __name__ == "__main__":
    main()
