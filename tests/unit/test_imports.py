"""The project's modules import each other without a circle, and importing the app builds no agent:
Faust's worker imports the agent and the views (`autodiscover`) when it starts."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import ROOT, run_python

PACKAGES = ("streams", "agents", "schemas")


def project_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "vendor" in path.parts:
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            modules[name] = path
    return modules


def import_graph() -> dict[str, set[str]]:
    """module -> the project's modules it imports (anywhere in it, a function's body included)."""
    modules = project_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
        graph[name] = {m for m in imported if m in modules and m != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for imported in sorted(graph[module]):
            if state.get(imported) == 1:
                found.append([*path[path.index(imported):], imported])
            elif imported not in state:
                visit(imported)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return found


def test_the_finder_sees_a_circle_when_there_is_one() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c", "a"]]


def test_no_module_of_the_project_imports_itself_through_others() -> None:
    graph = import_graph()
    assert "agents.orders" in graph and "streams.app" in graph["agents.orders"]  # the graph is read
    assert circles(graph) == []


def test_importing_the_app_builds_no_agent_and_the_worker_finds_it() -> None:
    run = run_python(
        "import sys\n"
        "from streams.app import app\n"
        "print(sorted(app.agents), 'agents.orders' in sys.modules, 'streams.web.views' in sys.modules)\n"
        "app.discover()  # what `faust -A streams.app worker` does before its on_worker_init\n"
        "print(sorted(app.agents))\n")
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["[] False False", "['process-orders']"]


def test_importing_the_agent_and_the_views_builds_none_of_the_workers_objects() -> None:
    """No producer, lane or store comes to be at import: a worker builds them when it starts."""
    run = run_python(
        "import agents.orders, streams.web.views, streams.worker\n"
        "print(streams.worker.built())\n"
        "try:\n"
        "    streams.worker.worker()\n"
        "except RuntimeError as exc:\n"
        "    print(exc)\n")
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "None", "the worker's objects are built when a worker starts (streams.worker.build)"]


def test_the_core_imports_nothing_of_the_engine_the_web_or_kafka() -> None:
    """The pure core (streams/core/) loads without Faust, aiokafka, mode, aiohttp or a Kafka client."""
    core = sorted(name for name in project_modules() if name.startswith("streams.core."))
    assert "streams.core.machine" in core and "streams.core.lifecycle" in core
    run = run_python(
        "import importlib, sys\n"
        f"for name in {core!r}:\n"
        "    importlib.import_module(name)\n"
        "outside = ('faust', 'aiokafka', 'mode', 'aiohttp', 'confluent_kafka', 'rocksdict',\n"
        "           'prometheus_client', 'streams.engine', 'streams.app')\n"
        "print(sorted(name for name in outside if name in sys.modules))\n")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
