"""The hot path's pure modules, compiled to C by mypyc when orderflow is installed (setup.py), and
the guard that never lets a stale build run.

The worker is bound by its one loop thread, and most of it is Python spread over dozens of small
steps per event (decode, the state machine, the order's save, the lanes, the acks): no single one is
worth cutting by hand. The same typed source compiled by mypyc takes 15 to 25% less CPU per event
(bench/RESULTS.md). Compiling is optional: with no C compiler, or ORDERFLOW_PURE=1 at install,
orderflow installs as pure Python and runs the same.

A compiled module shadows its source (Python imports `machine.cpython-311-….so` before
`machine.py`), so a source edited or checked out after the build would silently run the old code.
The build writes the sources' hashes to `streams/_compiled.json`; at import, when any source
differs from its hash (or ORDERFLOW_PURE=1 is set), every compiled module is imported from its
source instead, with one warning. All or none: compiled modules call each other directly.

This file is run by setup.py on its own: the standard library only.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

#: Compiled by setup.py: the modules on every event's path that do not reach into Faust themselves
#: (the order store and outbox go through the engine room's interface), and the effects' client,
#: on every effect call's path (a fifth less of the loop thread's CPU a call: bench/RESULTS.md,
#: 2026-12-06). The engine room, the agent, the web and the tools stay Python: they touch Faust's
#: internals, or run once per request.
MODULES = (
    "schemas.envelope", "streams.errors",
    "streams.core.deadletters", "streams.core.decisions", "streams.core.lifecycle",
    "streams.core.machine", "streams.core.outcomes", "streams.core.retry", "streams.core.stats",
    "streams.acks", "streams.closed", "streams.index", "streams.lanes", "streams.outbox",
    "streams.processor", "streams.state", "streams.effects", "streams.httpclient",
)
ROOT = Path(__file__).resolve().parent.parent
MANIFEST = "streams/_compiled.json"  # the build's record, relative to the root
PURE_ENV = "ORDERFLOW_PURE"

log = logging.getLogger(__name__)

#: What this process runs: "compiled (mypyc)" or "pure Python (why)"; set by `guard`.
status = "pure Python (not yet looked at)"
_decided = False


def source(module: str, root: Path = ROOT) -> Path:
    return root.joinpath(*module.split(".")).with_suffix(".py")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_manifest(root: Path = ROOT) -> None:
    """Called by setup.py when it compiles: the hashes of the sources it compiles."""
    hashes = {module: digest(source(module, root)) for module in MODULES}
    (root / MANIFEST).write_text(json.dumps(hashes, indent=1) + "\n")


def forget_build(root: Path = ROOT) -> None:
    """Called by setup.py when it installs pure Python: an earlier build's files must not run."""
    (root / MANIFEST).unlink(missing_ok=True)
    for module in MODULES:
        path = source(module, root)
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path.with_suffix(suffix).unlink(missing_ok=True)


def built(module: str, root: Path = ROOT) -> bool:
    """True when the module has a compiled file beside its source."""
    path = source(module, root)
    return any(path.with_suffix(suffix).exists() for suffix in importlib.machinery.EXTENSION_SUFFIXES)


def changed_sources(root: Path = ROOT) -> list[str] | None:
    """The compiled modules whose source is not what was compiled (None: no build to check)."""
    manifest = root / MANIFEST
    if not manifest.exists():
        return None
    try:
        hashes = json.loads(manifest.read_text())
    except ValueError:
        return list(MODULES)
    return [module for module in MODULES
            if not source(module, root).exists() or hashes.get(module) != digest(source(module, root))]


class _FromSources(importlib.abc.MetaPathFinder):
    """Imports the compiled modules from their sources, ahead of the compiled files."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if fullname not in MODULES:
            return None
        return importlib.util.spec_from_file_location(fullname, source(fullname))


def guard() -> str:
    """Decide, once per process and before any compiled module is imported, whether the compiled
    modules run; returns (and keeps in `status`) what runs."""
    global status, _decided
    if _decided:
        return status
    _decided = True
    if not any(built(module) for module in MODULES):
        status = "pure Python (not compiled at install)"
        return status
    changed = changed_sources()
    if os.environ.get(PURE_ENV, "") not in ("", "0"):
        status = f"pure Python ({PURE_ENV} is set)"
    elif changed is None:
        status = "pure Python (compiled files without the build's record of their sources)"
    elif changed:
        status = (f"pure Python ({source(changed[0]).relative_to(ROOT)} changed since it was "
                  "compiled: pip install -e . compiles again)")
        log.warning("orderflow runs its %s", status)
    else:
        status = "compiled (mypyc)"
        return status
    sys.meta_path.insert(0, _FromSources())
    return status
