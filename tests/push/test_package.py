"""The push package's shape: every module imports alone, module-level imports never go round in a
circle (anywhere in qcflow), and the push function's cold start loads push but no harvest code."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "shared" / "qcflow"
PUSH_MODULES = sorted(
    "qcflow.push" + ("" if p.stem == "__init__" else f".{p.stem}") for p in (PACKAGE / "push").glob("*.py")
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    base = PACKAGE.parent.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level_imports(path: Path, name: str) -> set[str]:
    """The qcflow modules ``path`` imports when it is loaded: statements run at import time (not in
    functions, not under ``if TYPE_CHECKING:``); ``from pkg import sub`` counts as ``pkg.sub``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join(anchor + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                subs = [f"{module}.{a.name}" for a in node.names if _is_module(f"{module}.{a.name}")]
                found.update(subs)
                if len(subs) < len(node.names):
                    found.add(module)
            elif isinstance(node, ast.If):
                if not _is_type_checking(node.test):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.ClassDef):
                visit(node.body)
            elif isinstance(node, (ast.Try, ast.With)):
                visit(node.body)
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)
                visit(getattr(node, "orelse", []))
                visit(getattr(node, "finalbody", []))

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)).body)
    return {m for m in found if m.startswith("qcflow.") and m != name and _is_module(m)}


def _import_graph() -> dict[str, set[str]]:
    return {_module_name(p): _module_level_imports(p, _module_name(p)) for p in sorted(PACKAGE.rglob("*.py"))}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (as a path that ends where it starts), or None."""
    state: dict[str, str] = {}
    path: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                found = walk(nxt)
                if found:
                    return found
        path.pop()
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            found = walk(start)
            if found:
                return found
    return None


def test_the_graph_check_sees_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_graph_reads_the_push_package() -> None:
    graph = _import_graph()
    assert "qcflow.push.recordings" in graph["qcflow.push.pusher"]
    assert "qcflow.push.calls" in graph["qcflow.push.pusher"]
    assert "qcflow.push.replay" not in graph["qcflow.push.pusher"]  # only inside Pusher.replay/replayable
    assert "qcflow.push.pusher" not in graph["qcflow.push.replay"]  # only under TYPE_CHECKING
    assert not {m for m in graph["qcflow.services"] if m.startswith("qcflow.push")}  # only inside a function


def test_no_module_level_import_cycle_in_qcflow() -> None:
    cycle = _cycle(_import_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_push_modules_import_nothing_above_them() -> None:
    """Within the package, imports run one way: results < recordings < calls < pusher, replay < __init__."""
    order = ["results", "recordings", "calls", "pusher", "replay"]
    graph = _import_graph()
    for index, name in enumerate(order):
        itself_or_later = {f"qcflow.push.{m}" for m in order[index:]} | {"qcflow.push"}
        assert not graph[f"qcflow.push.{name}"] & itself_or_later, name


@pytest.mark.parametrize("module", PUSH_MODULES)
def test_each_push_module_imports_alone(module: str) -> None:
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_push_cold_start_loads_push_but_not_harvest() -> None:
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT / 'functions' / 'push')!r}); import index; "
        "print(__import__('json').dumps(sorted(m for m in sys.modules if m.startswith('qcflow'))))"
    )
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
    assert {"qcflow.push", "qcflow.push.pusher", "qcflow.triggers"} <= set(loaded)
    assert not [m for m in loaded if m.startswith(("qcflow.harvest", "qcflow.callback", "qcflow.tools.sandbox", "qcflow.tools.cli"))]
    assert "qcflow.push.replay" not in loaded  # operators' commands


@pytest.mark.parametrize("function", ["harvest", "callback"])
def test_other_functions_do_not_load_push(function: str) -> None:
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT / 'functions' / function)!r}); import index; "
        "print(__import__('json').dumps(sorted(m for m in sys.modules if m.startswith('qcflow'))))"
    )
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
    assert not [m for m in loaded if m.startswith("qcflow.push")]
