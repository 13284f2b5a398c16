"""The package's shape, checked on the source: imports only point down, no cycles.

Layers (ARCHITECTURE.md), lowest first; a module may import its own layer or a lower one:
  nura.errors  <  nura.config  <  nura.core (and the `nura` facade)  <  nura.notify
  <  the system rooms (nura.kb among them)  <  nura.platform, nura.admin  <  nura.cli
The installed package never imports the project's folders (flows, tasks, blocks,
deployments), and a system room imports another only where ALLOWED says why.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
PACKAGE = PROJECT / "nura"
PROJECT_FOLDERS = {"flows", "tasks", "blocks", "deployments", "tests", "benchmarks"}
LAYER = {
    "errors": 0,
    "config": 1,
    "core": 2,
    "": 2,  # `from nura import get_config`: the facade re-exports core
    "notify": 3,
    "kb": 4,  # embeddings and answers are Bedrock calls; the sources write into it
    "confluence": 4,
    "bedrock": 4,
    "git": 4,
    "health": 4,
    "webhooks": 4,
    "retention": 4,  # erasure spans the stores and the knowledge base (kb)
    "platform": 5,
    "admin": 5,  # operator actions over every room, served by the platform's receiver app
    "cli": 6,
}
ALLOWED = {
    # The health check of Confluence authenticates with the sync's credentials block.
    ("health", "confluence"),
    # The sources write their documents into the knowledge base and refresh its index.
    ("confluence", "kb"),
    ("git", "kb"),
    # Embeddings and answers go through Bedrock's invocation path (budgets, ledger, chain).
    ("kb", "bedrock"),
    # Erasure removes a document and everything derived from it, its chunks included.
    ("retention", "kb"),
}


def _module(path: Path) -> str:
    parts = list(path.relative_to(PROJECT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports() -> dict[str, set[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        module = _module(path)
        found[module]  # every module is a node, with or without imports
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found[module].add(node.module)
            elif isinstance(node, ast.Import):
                found[module].update(alias.name for alias in node.names)
    return found


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_the_package_never_imports_the_project_folders() -> None:
    wrong = [
        f"{module} imports {target}"
        for module, targets in _imports().items()
        for target in targets
        if target.split(".")[0] in PROJECT_FOLDERS
    ]
    assert not wrong, wrong


def test_imports_point_down() -> None:
    wrong = []
    for module, targets in _imports().items():
        here = _room(module)
        for target in targets:
            if target.split(".")[0] != "nura":
                continue
            there = _room(target)
            if there == here:
                continue
            assert here in LAYER and there in LAYER, f"unknown room in {module} -> {target}"
            up = LAYER[there] > LAYER[here]
            sideways = LAYER[there] == LAYER[here] == 4 and (here, there) not in ALLOWED
            if up or sideways:
                wrong.append(f"{module} imports {target}")
    assert not wrong, wrong


def test_no_import_cycle_between_modules() -> None:
    imports = _imports()
    modules = set(imports)

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {
        m: {r for t in ts if t.startswith("nura") and (r := resolve(t)) not in (None, m)}
        for m, ts in imports.items()
    }
    cycles, index, low, stack, on_stack = [], {}, {}, [], set()

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, cycles


def test_flows_do_no_io_and_tasks_import_no_flow() -> None:
    wrong = []
    for folder, banned in (
        ("flows", {"httpx", "boto3", "botocore", "sqlalchemy", "nura.core.stores"}),
        ("tasks", {"flows"}),
    ):
        for path in (PROJECT / folder).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = (
                    [node.module or ""]
                    if isinstance(node, ast.ImportFrom)
                    else [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else []
                )
                for name in names:
                    if any(name == b or name.startswith(b + ".") for b in banned):
                        wrong.append(f"{path.relative_to(PROJECT)} imports {name}")
    assert not wrong, wrong
