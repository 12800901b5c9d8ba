"""What a fresh ``pip install .`` gets: every third-party module the framework or a built-in
imports is a core dependency, except the declared optional ones; the README's cluster recipe
does not repeat the dependency list (it goes stale: scipy was missing from it)."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

from streampipe._toml import tomllib

ROOT = Path(__file__).resolve().parents[2]
# optional on purpose, each with the extra that installs it and why a run works without it
OPTIONAL = {
    "cupy": "gpu",  # only imported when a stage runs on a GPU (device = "gpu" / "auto" found one)
    "sklearn": "learn",  # split-learning's digits; synthetic digits without it
    "torch": "torch",  # PyTorch models in [train] jobs, only when a job names one
}
DIST = {"sklearn": "scikit-learn", "cupy": "cupy-cuda12x", "yaml": "pyyaml"}


def _name(req: str) -> str:
    return re.match(r"[A-Za-z0-9_.-]+", req).group(0).lower().replace("_", "-")


def third_party_imports() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for folder in ("streampipe", "pipelines"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                         [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0
                         and node.module else [])
                for n in names:
                    top = n.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in ("streampipe",
                                                                          "pipelines"):
                        out.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return out


def test_core_dependencies_cover_every_shipped_job():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {_name(r) for r in project["dependencies"]}
    extras = {k: {_name(r) for r in v} for k, v in project["optional-dependencies"].items()}
    for module, files in sorted(third_party_imports().items()):
        dist = DIST.get(module, module)
        if module in OPTIONAL:
            assert dist in extras[OPTIONAL[module]], (module, OPTIONAL[module])
        else:
            assert dist in core, f"{module} (imported by {sorted(files)}) is not a dependency"


def test_cluster_recipe_does_not_repeat_the_dependency_list():
    text = (ROOT / "README.md").read_text()
    section = text.split("## On a cluster", 1)[1].split("\n## ", 1)[0]
    for line in re.findall(r"^\s*(?:env \S+ )?pip install (.*)$", section, re.M):
        args = [a for a in line.split("#")[0].split() if not a.startswith("-")]
        assert all(a in (".", "mpi4py") for a in args), line
