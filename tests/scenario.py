"""Order traffic for integration tests: the simulator's, with the outcome it must lead to."""

from __future__ import annotations

from streams.tools.simulate import Traffic, traffic


def scenario(orders: int, clients: int, seed: int, prefix: str = "o") -> Traffic:
    """Valid lifecycles, some neighbours swapped, some events sent twice, a few impossible events."""
    return traffic(orders, clients, seed, prefix)
