"""The compiled hot path (streams/compiled.py, setup.py): the install compiles it, and a source
changed after the build, or ORDERFLOW_PURE=1, runs every compiled module from its source instead."""

from __future__ import annotations

import importlib.machinery
import os
import shutil
import subprocess
import sys
from pathlib import Path

from streams import compiled

REPORT = ("import streams.compiled as c, streams.processor as p, schemas.envelope as e; "
          "print(c.status); print(p.__file__); print(e.__file__); "
          "print(e.decode(b'{\"event_id\": \"e1\", \"order_id\": \"o1\", \"client_id\": \"c1\", "
          "\"type\": \"created\", \"occurred_at\": \"2026-01-01T00:00:00Z\", \"schema_version\": 1}', "
          "b'c1')['order_id'])")


def report(cwd: Path, **env: str) -> list[str]:
    """What a fresh process imports from `cwd` (status, the processor's and envelope's files)."""
    env = {**os.environ, "PYTHONPATH": str(cwd), "ORDERFLOW_PURE": "", **env}
    done = subprocess.run([sys.executable, "-c", REPORT], cwd=cwd, env=env, capture_output=True,
                          text=True, check=True, timeout=60)
    return [*done.stdout.splitlines(), done.stderr]


def copy_install(to: Path) -> Path:
    """The installed packages, compiled files and the build's record included, in another place."""
    for package in ("streams", "schemas", "agents"):
        shutil.copytree(compiled.ROOT / package, to / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for shared in compiled.ROOT.glob("*__mypyc*"):  # the modules' shared library
        shutil.copy2(shared, to / shared.name)
    return to


def test_the_install_runs_the_compiled_modules() -> None:
    status, processor, envelope, order_id, _ = report(compiled.ROOT)
    assert status == "compiled (mypyc)"
    assert not processor.endswith(".py") and not envelope.endswith(".py")
    assert order_id == "o1"


def test_orderflow_pure_runs_every_compiled_module_from_its_source() -> None:
    status, processor, envelope, order_id, _ = report(compiled.ROOT, ORDERFLOW_PURE="1")
    assert status == "pure Python (ORDERFLOW_PURE is set)"
    assert processor.endswith("streams/processor.py") and envelope.endswith("schemas/envelope.py")
    assert order_id == "o1"


def test_a_source_changed_after_the_build_runs_all_from_sources_and_says_so(tmp_path: Path) -> None:
    copy = copy_install(tmp_path)
    status, processor, _, _, _ = report(copy)
    assert status == "compiled (mypyc)" and processor.startswith(str(copy))
    lanes = copy / "streams" / "lanes.py"
    lanes.write_text(lanes.read_text() + "\n# edited after the build\n")
    status, processor, envelope, order_id, stderr = report(copy)
    assert status.startswith("pure Python (streams/lanes.py changed since it was compiled")
    assert processor == str(copy / "streams" / "processor.py")  # not only the changed one
    assert envelope == str(copy / "schemas" / "envelope.py")
    assert order_id == "o1"
    assert "streams/lanes.py changed since it was compiled" in stderr


def test_the_build_record_names_the_changed_sources(tmp_path: Path) -> None:
    for module in compiled.MODULES:
        target = compiled.source(module, tmp_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(compiled.source(module), target)
    assert compiled.changed_sources(tmp_path) is None  # no build, nothing to check
    compiled.write_manifest(tmp_path)
    assert compiled.changed_sources(tmp_path) == []
    machine = compiled.source("streams.core.machine", tmp_path)
    machine.write_text(machine.read_text().replace("def apply(", "def apply_(", 1))
    assert compiled.changed_sources(tmp_path) == ["streams.core.machine"]


def test_a_pure_install_forgets_an_earlier_build(tmp_path: Path) -> None:
    for module in compiled.MODULES:
        target = compiled.source(module, tmp_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(compiled.source(module), target)
        target.with_suffix(importlib.machinery.EXTENSION_SUFFIXES[0]).write_bytes(b"a build")
    compiled.write_manifest(tmp_path)
    assert all(compiled.built(module, tmp_path) for module in compiled.MODULES)
    compiled.forget_build(tmp_path)
    assert not any(compiled.built(module, tmp_path) for module in compiled.MODULES)
    assert compiled.changed_sources(tmp_path) is None
    assert all(compiled.source(module, tmp_path).exists() for module in compiled.MODULES)
