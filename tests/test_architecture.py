"""The rules of the house, checked on the import graph (see docs/architecture.md).

- No import cycles between monitor's modules, counting imports under `TYPE_CHECKING` and imports
  inside functions: a cycle hidden from the interpreter is still two modules that need each other.
- Pure stages (parse, normalize, query, dedup, render, scheduling maths, the shared values and
  text folding) import no I/O library, no `monitor.store`, and read no environment.
- SQL lives in `monitor/store/`: no other module imports SQLAlchemy, SQLModel or a driver.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "monitor"

PURE = (
    "monitor.clock",
    "monitor.dedup",
    "monitor.model",
    "monitor.normalize",
    "monitor.parse",
    "monitor.query",
    "monitor.redact",
    "monitor.render",
    "monitor.schedule",
    "monitor.textnorm",
    "monitor.timeparse",
)
IO_LIBRARIES = frozenset(
    {
        "aiohttp",
        "aiosmtplib",
        "alembic",
        "httpx",
        "os",
        "psycopg",
        "requests",
        "slack_sdk",
        "smtplib",
        "socket",
        "sqlalchemy",
        "sqlmodel",
        "subprocess",
        "urllib.request",
        "watchfiles",
    }
)
IO_MODULES = ("monitor.store", "monitor.fetch", "monitor.notify", "monitor.service", "monitor.web")
SQL_LIBRARIES = ("sqlalchemy", "sqlmodel", "psycopg", "alembic")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


MODULES = _modules()


def _imports(path: Path) -> Iterator[tuple[str, int]]:
    """Every imported name (module or `module.name`), wherever the import statement is."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module, node.lineno
            for alias in node.names:
                yield f"{node.module}.{alias.name}", node.lineno


def _internal_target(name: str) -> str | None:
    """The monitor module an imported name refers to (a submodule, else its module)."""
    while name.startswith("monitor"):
        if name in MODULES:
            return name
        if "." not in name:
            return None
        name = name.rsplit(".", 1)[0]
    return None


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for imported, _ in _imports(path):
            target = _internal_target(imported)
            # A package's __init__ importing its own submodules is how a package re-exports.
            if target and target != name and not target.startswith(name + "."):
                graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _in(name: str, prefixes: tuple[str, ...] | frozenset[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_graph_sees_every_module() -> None:
    # Guards the checks below against silently looking at nothing.
    wanted = {"monitor.cli", "monitor.parse.feeds", "monitor.query.matcher", "monitor.store.db"}
    assert wanted <= set(MODULES)
    assert "monitor.parse.common" in _graph()["monitor.parse.feeds"]


def test_no_import_cycles() -> None:
    assert _cycles(_graph()) == []


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _in(m, PURE)))
def test_pure_modules_do_no_io(module: str) -> None:
    path = MODULES[module]
    bad = [
        f"{path.name}:{line} imports {name}"
        for name, line in _imports(path)
        if _in(name, IO_LIBRARIES) or _in(name, IO_MODULES)
    ]
    assert bad == []
    assert "environ" not in path.read_text(encoding="utf-8")


def test_pure_list_names_real_modules() -> None:
    assert [p for p in PURE if not any(_in(m, (p,)) for m in MODULES)] == []


def test_sql_lives_in_the_store() -> None:
    bad = [
        f"{MODULES[name].relative_to(ROOT.parent)}:{line} imports {imported}"
        for name in MODULES
        if not _in(name, ("monitor.store",))
        for imported, line in _imports(MODULES[name])
        if _in(imported, SQL_LIBRARIES)
    ]
    assert bad == []
