"""The root logger's level after Faust's startup spinner (streams/engine/logs.py)."""

from __future__ import annotations

import io
import logging
from types import SimpleNamespace

import faust
from faust.utils.terminal import Spinner

from streams.engine.logs import settle_root_level


def _root_as_faust_leaves_it(level: int) -> tuple[logging.Logger, io.StringIO]:
    """A logger set up the way `faust worker -l LEVEL` sets up the root, by Faust's own code."""
    shown = io.StringIO()
    root = logging.getLogger(f"orderflow-test-root-{level}")  # the manager's: caches cleared on setLevel
    root.handlers.clear()
    root.propagate = False
    root.addHandler(logging.StreamHandler(shown))
    root.setLevel(level)
    worker = SimpleNamespace(spinner=Spinner(file=io.StringIO()))
    faust.Worker._disable_spinner_if_level_below_WARN(worker, level)  # type: ignore[arg-type]
    faust.Worker._setup_spinner_handler(worker, root, level)  # type: ignore[arg-type]
    return root, shown


def test_a_worker_at_warn_stops_building_debug_records_once_it_runs() -> None:
    root, shown = _root_as_faust_leaves_it(logging.WARNING)
    assert root.isEnabledFor(logging.DEBUG)  # Faust's spinner: every debug call builds a record
    assert settle_root_level(root) == logging.WARNING
    assert not root.isEnabledFor(logging.DEBUG)
    root.debug("not shown")
    root.warning("shown")
    assert shown.getvalue() == "shown\n"


def test_a_worker_at_debug_keeps_debug() -> None:
    root, shown = _root_as_faust_leaves_it(logging.DEBUG)
    assert settle_root_level(root) == logging.DEBUG
    root.debug("shown")
    assert shown.getvalue() == "shown\n"
