"""Faust's, aiokafka's and mode's internals are touched in streams/engine only, and a worker on
another faust-streaming version than the engine follows refuses to start, with one line."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from streams.engine import FAUST_VERSION, require_faust_version
from tests.helpers import run_python

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "streams" / "engine"
#: the engine's neighbours may use these public modules of the libraries it wraps
PUBLIC = {"faust", "faust.web", "faust.types", "faust.exceptions"}
WRAPPED = ("faust", "aiokafka", "mode")
#: confluent-kafka's error codes are public constants with a leading underscore
PUBLIC_UNDERSCORED = {"KafkaError"}


def outside_the_engine() -> list[Path]:
    files = [*(ROOT / "streams").rglob("*.py"), *(ROOT / "agents").rglob("*.py")]
    return [f for f in files if ENGINE not in f.parents]


def reaches_inside(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules = [node.module]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        else:
            modules = []
        for module in modules:
            if module.split(".")[0] in WRAPPED and module not in PUBLIC:
                found.append(f"line {node.lineno}: imports {module}")
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in WRAPPED:
            found += [f"line {node.lineno}: imports {a.name}" for a in node.names if a.name.startswith("_")]
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            base = node.value
            if not (isinstance(base, ast.Name) and base.id in ({"self", "cls"} | PUBLIC_UNDERSCORED)):
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
        if isinstance(node, ast.ClassDef) and any(
                ast.unparse(base).split(".")[0] in WRAPPED for base in node.bases):
            found += [f"line {item.lineno}: overrides {item.name}" for item in node.body
                      if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
                      and item.name.startswith("_") and not item.name.startswith("__")]
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in
                ("getattr", "setattr", "hasattr") and len(node.args) > 1
                and isinstance(node.args[1], ast.Constant) and str(node.args[1].value).startswith("_")):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_only_the_engine_reaches_into_faust_aiokafka_and_mode() -> None:
    offenders = {str(f.relative_to(ROOT)): hits for f in outside_the_engine()
                 if (hits := reaches_inside(ast.parse(f.read_text())))}
    assert offenders == {}


def test_the_check_itself_sees_a_private_name() -> None:
    planted = ast.parse("from faust.tables.recovery import Recovery\nx = app.consumer._committed_offset\n"
                        "y = getattr(consumer, '_gap')\nfrom faust.streams import _current_event\n"
                        "class A(faust.App):\n    def _new_transport(self): ...\n")
    assert len(reaches_inside(planted)) == 6


def test_the_engine_follows_the_installed_version() -> None:
    require_faust_version()  # what a worker does first


def test_another_version_is_refused_with_one_line() -> None:
    with pytest.raises(SystemExit) as refused:
        require_faust_version("0.16.0")
    message = str(refused.value)
    assert "\n" not in message and FAUST_VERSION in message and "0.16.0" in message


def test_a_worker_on_another_version_stops_before_starting() -> None:
    run = run_python(
        "import importlib.metadata as md, sys\n"
        "real = md.version\n"
        "md.version = lambda name: '0.14.9' if name == 'faust-streaming' else real(name)\n"
        "from faust.cli.faust import cli\n"
        "sys.argv = ['faust', '-A', 'streams.app', 'worker', '--web-port', '6999']\n"
        "cli()\n")
    assert run.returncode != 0
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert f"follows faust-streaming {FAUST_VERSION}, but 0.14.9 is installed" in lines[0]
