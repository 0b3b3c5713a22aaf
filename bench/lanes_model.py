"""How busy can 64 lanes be with effects, under each rule for picking an order's lane? A model, no
Kafka and no CPU cost: the effect-bound workload of bench/peers/run.py (orders of five events in
topic order, the third calling an effect that takes `--call-ms`), at most `--in-flight` events
queued or running, every other event free.

    python bench/lanes_model.py [--lanes 64] [--call-ms 20] [--in-flight 2048] [--orders 3000 12000 48000]

"hashed": `crc32(order_id) % lanes` picks the lane (orderflow until 2026-12-05): an order waits
behind the orders hashed to its lane while other lanes stand idle, and a burst ends when its
busiest lane does. "free": any free lane takes the next order with work (streams/lanes.py). Prints
the effects/s each rule allows as a share of lanes / call time, the bound issue 13 measures
against.
"""

from __future__ import annotations

import argparse
import heapq
import zlib
from collections import deque

KINDS = 5
CALLING = 2  # the third event (paid) calls the effect


def events(orders: int, call_s: float) -> list[tuple[str, float]]:
    return [(f"e-{n}", call_s if kind == CALLING else 0.0) for n in range(orders) for kind in range(KINDS)]


def hashed(orders: int, lanes: int, call_s: float, in_flight: int) -> float:
    """Seconds to finish every event, each lane running its hashed orders' events in order."""
    lane_free = [0.0] * lanes  # when each lane has done what it was given
    ends: list[float] = []  # the events in flight, by when they end
    now = last = 0.0
    for order_id, cost in events(orders, call_s):
        while len(ends) >= in_flight:
            now = max(now, heapq.heappop(ends))
        lane = zlib.crc32(order_id.encode()) % lanes
        lane_free[lane] = end = max(now, lane_free[lane]) + cost
        heapq.heappush(ends, end)
        last = max(last, end)
    return last


def free(orders: int, lanes: int, call_s: float, in_flight: int) -> float:
    """Seconds to finish every event, a free lane taking the oldest order with work."""
    todo = events(orders, call_s)
    queued: dict[str, deque[float]] = {}  # orders with work: their events' costs not yet begun
    ready: deque[str] = deque()  # orders with work and no lane, oldest first
    running: list[tuple[float, str]] = []  # (end, order) of the lanes' current events
    now, held, fed, idle = 0.0, 0, 0, lanes

    def start() -> None:
        nonlocal idle
        while idle and ready:
            order_id = ready.popleft()
            heapq.heappush(running, (now + queued[order_id].popleft(), order_id))
            idle -= 1

    while fed < len(todo) or running:
        while fed < len(todo) and held < in_flight:
            order_id, cost = todo[fed]
            fed, held = fed + 1, held + 1
            if order_id not in queued:
                queued[order_id] = deque()
                ready.append(order_id)
            queued[order_id].append(cost)
            start()
        now, order_id = heapq.heappop(running)
        held, idle = held - 1, idle + 1
        if queued[order_id]:
            ready.appendleft(order_id)  # the lane goes on with its order
        else:
            del queued[order_id]
        start()
    return now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lanes", type=int, default=64)
    parser.add_argument("--call-ms", type=float, default=20.0)
    parser.add_argument("--in-flight", type=int, default=2048)
    parser.add_argument("--orders", type=int, nargs="+", default=[3000, 12000, 48000])
    args = parser.parse_args()
    if args.lanes < 1 or args.call_ms <= 0 or args.in_flight < 1 or min(args.orders) < 1:
        parser.error("lanes, in-flight and orders must be at least 1, the call time above 0")
    call_s = args.call_ms / 1000
    bound = args.lanes / call_s
    print(f"| orders | hashed lanes | free lanes |  (share of {args.lanes} lanes / {args.call_ms:g} ms"
          f" = {bound:,.0f} effects/s; at most {args.in_flight:,} events in flight)")
    print("|---|---|---|")
    for orders in args.orders:
        shares = [orders / rule(orders, args.lanes, call_s, args.in_flight) / bound
                  for rule in (hashed, free)]
        print(f"| {orders:,} | {shares[0]:.1%} | {shares[1]:.1%} |", flush=True)


if __name__ == "__main__":
    main()
