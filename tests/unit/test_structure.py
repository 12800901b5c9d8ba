"""How the framework's modules depend on each other (read from the source, no MPI).

Oracles: the import graph, counting imports inside functions too, has no circle (a function-level
import that only dodges a circle shows up as one); the run file is storage only; the analysis
does not know its renderings; every module imports on a Python without ``tomllib`` (3.10).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "streampipe"


def _imports(path: Path) -> set[str]:
    """streampipe modules ``path`` imports anywhere in its code (relative or absolute)."""
    mod = path.stem
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                out.add(node.module.split(".")[0])
            elif node.level == 1:  # from . import x, y
                out.update(a.name for a in node.names)
            elif node.module and node.module.split(".")[0] == "streampipe":
                parts = node.module.split(".")
                out.update([parts[1]] if len(parts) > 1 else [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == "streampipe":
                    out.add(parts[1] if len(parts) > 1 else "__init__")
    modules = {p.stem for p in PKG.glob("*.py")}
    return {m for m in out if m in modules and m != mod}


def graph() -> dict[str, set[str]]:
    return {p.stem: _imports(p) for p in PKG.glob("*.py") if p.stem not in ("__init__",
                                                                          "__main__")}


def _cycle(g: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(g.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(g):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_cycle_finder_finds_a_planted_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle_even_through_function_level_imports():
    assert _cycle(graph()) is None, " -> ".join(_cycle(graph()))


@pytest.mark.parametrize("module,never", [
    ("runfile", {"report", "textreport", "finish", "trace", "plot", "sim", "runtime"}),
    ("report", {"textreport", "trace", "plot", "runfile", "finish", "cli", "sim"}),
    ("summary", {"report", "sim", "runfile"}),
    ("sim", {"advisor", "cli", "report", "textreport"}),
    ("events", {"report", "runfile"}),
])
def test_data_flows_one_way(module, never):
    """Storage knows nothing of analysis; analysis nothing of its renderings or of storage."""
    reach, todo = set(), [module]
    g = graph()
    while todo:
        for m in g.get(todo.pop(), ()):
            if m not in reach:
                reach.add(m)
                todo.append(m)
    assert not reach & never, f"{module} reaches {sorted(reach & never)}"


def test_every_module_imports_without_tomllib():
    """Python 3.10 has no tomllib: the package must fall back to tomli (a dependency there).
    A stand-in tomli made from tomllib proves the fallback is taken and works."""
    code = """
import importlib, pkgutil, sys, types, tomllib as real
fake = types.ModuleType("tomli")
fake.loads, fake.TOMLDecodeError = real.loads, real.TOMLDecodeError
sys.modules["tomli"] = fake
sys.modules["tomllib"] = None          # `import tomllib` now raises ModuleNotFoundError
import streampipe
for m in pkgutil.iter_modules(streampipe.__path__):
    if m.name == "__main__":
        continue
    importlib.import_module(f"streampipe.{m.name}")
from streampipe.job import load_job
spec = load_job("jobs/var.toml", ["stages.value.replicas=3"])
assert spec.ranks == 5, spec.ranks
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=PKG.parent, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
