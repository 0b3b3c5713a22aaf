"""Draw bench/peers/peers.png from peers.json (run in the peers virtualenv, which has matplotlib)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main() -> None:
    data = json.loads(Path(sys.argv[1]).read_text())
    panels = [("CPU-bound: events/s", data["cpu"])] + (
        [("Effect-bound (20 ms per effect): events/s", data["effects"])] if data["effects"] else [])
    figure, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 3.8), squeeze=False)
    for axis, (title, rows) in zip(axes[0], panels, strict=True):
        names = [r["name"].replace(" (", "\n(").replace(", ", ",\n", 1) for r in rows]
        rates = [r["rate"] for r in rows]
        bars = axis.barh(names, rates, color=["#888" if "orderflow" not in n else "#2a7" for n in names])
        axis.bar_label(bars, labels=[f"{r:,.0f}" for r in rates], padding=3, fontsize=8)
        axis.set_title(title, fontsize=10)
        axis.set_xscale("log")
        axis.set_xlim(left=100)  # every bar from the same floor, so lengths compare
        axis.invert_yaxis()
        axis.tick_params(axis="y", labelsize=7)
    figure.tight_layout()
    figure.savefig(sys.argv[2], dpi=110)


if __name__ == "__main__":
    main()
