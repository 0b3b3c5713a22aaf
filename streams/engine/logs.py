"""The root logger's level, as the user asked for it.

`faust worker -l warn` (or `info` and up) shows a progress spinner while the worker starts, and to
make it turn at every log record Faust sets the root logger to DEBUG (faust/worker.py,
`_setup_spinner_handler`); it never sets it back. From then on every `log.debug` of every library
builds a record and walks the handlers, though no handler shows it: mode's timers alone build one
at each of their ticks (0.9% of the loop thread's samples with effects, 2026-12-05). Once the
worker runs, the root goes back to the level of the handlers that do show records.
"""

from __future__ import annotations

import logging

from faust.utils.terminal import SpinnerHandler

__all__ = ["settle_root_level"]


def settle_root_level(root: logging.Logger | None = None) -> int:
    """Raise the root logger to the lowest level among its handlers other than Faust's spinner,
    when that is above its own (a worker run at `-l debug` keeps DEBUG); returns its level."""
    root = root if root is not None else logging.getLogger()
    shown = [handler.level for handler in root.handlers if not isinstance(handler, SpinnerHandler)]
    if shown and min(shown) > root.level:
        root.setLevel(min(shown))
    return root.level
