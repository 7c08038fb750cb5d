"""The layout contract: imports only go down the layers, and each dvc.yaml stage lists the code it runs.

Both are read statically from the source (every `import` statement, at any depth), so they need no
heavy imports and hold for code paths the other tests do not run.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT

PACKAGES = ("pipeline", "stages", "models")

# Layers, top to bottom: a module may import its own layer and the layers below it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("stages",),
    ("pipeline.cli", "pipeline.__main__", "pipeline.study"),
    ("pipeline.evaluation",),
    ("pipeline.training",),
    ("pipeline.data", "pipeline.encoders"),
    ("pipeline.artifacts",),
    ("pipeline.config", "pipeline.errors", "pipeline.runtime", "pipeline"),
    ("models",),
)
# The CLI is the entry point that runs the stages (`cra <stage>`, `python -m pipeline <stage>`), and the
# study (`cra report`) runs them too.
ALLOWED_UPWARD = {("pipeline.cli", "stages"), ("pipeline.study", "stages")}

# Imported by every stage but not listed as a dvc.yaml dep: package markers and the error class,
# which cannot change an artifact.
NOT_DEPS = {"pipeline/errors.py"}


def module_files() -> dict[str, Path]:
    """`{dotted module name: file}` of the project's own code."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


MODULES = module_files()


@cache
def imports_of(name: str) -> frozenset[str]:
    """The project modules `name` imports anywhere in its source (function-level imports included)."""
    tree = ast.parse(MODULES[name].read_text(), filename=str(MODULES[name]))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            candidates = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for candidate in candidates:
            if candidate in MODULES:
                found.add(candidate)
    # Importing a module runs its packages' __init__ first.
    for module in list(found):
        parts = module.split(".")
        found.update(".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in MODULES)
    found.discard(name)
    return frozenset(found)


def layer_of(name: str) -> int:
    best = None
    for rank, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if name == prefix or name.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (rank, len(prefix))
    assert best is not None, f"{name} is in no layer of LAYERS"
    return best[0]


def group_of(name: str) -> str:
    """The layer entry a module belongs to (the longest matching prefix)."""
    matches = [p for prefixes in LAYERS for p in prefixes if name == p or name.startswith(p + ".")]
    return max(matches, key=len)


def test_imports_only_go_down():
    upward = []
    for name in MODULES:
        for imported in imports_of(name):
            if layer_of(imported) >= layer_of(name):
                continue
            if (group_of(name), group_of(imported).split(".")[0]) in ALLOWED_UPWARD:
                continue
            upward.append(f"{name} -> {imported}")
    assert upward == []


def test_models_import_nothing_from_pipeline_or_stages():
    offending = [
        f"{name} -> {imported}"
        for name in MODULES
        if name.startswith("models")
        for imported in imports_of(name)
        if not imported.startswith("models")
    ]
    assert offending == []


def test_no_module_imports_a_sibling_layer_package():
    # data and encoders share a layer but stay independent of each other.
    crossing = [
        f"{name} -> {imported}"
        for name in MODULES
        for imported in imports_of(name)
        if {group_of(name), group_of(imported)} == {"pipeline.data", "pipeline.encoders"}
    ]
    assert crossing == []


def stage_code(stage: str) -> set[str]:
    """Files of the project code a stage runs: `stages/<stage>.py` and what it imports, transitively.

    The model config dataclasses that `pipeline/config.py` composes are left out: every stage loads
    the config, but only train and evaluate run the models (they list `models` whole).
    """
    seen, todo = set(), [f"stages.{stage}"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(m for m in imports_of(name) if not (name == "pipeline.config" and m.startswith("models")))
    files = {MODULES[name].relative_to(REPO_ROOT).as_posix() for name in seen}
    return {f for f in files if not f.endswith("__init__.py") or _has_code(REPO_ROOT / f)} - NOT_DEPS


def _has_code(path: Path) -> bool:
    """Whether a package `__init__.py` does more than hold a docstring."""
    body = ast.parse(path.read_text()).body
    return any(not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)) for node in body)


def _covers(dep: str, path: str) -> bool:
    return path == dep or path.startswith(dep.rstrip("/") + "/")


DVC_STAGES = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("stage", sorted(DVC_STAGES))
def test_dvc_deps_list_exactly_the_code_each_stage_runs(stage):
    deps = [d for d in DVC_STAGES[stage]["deps"] if d.split("/")[0] in PACKAGES]
    code = stage_code(stage) - {"pipeline/__init__.py"}  # sets an OpenMP wait policy only
    missing = sorted(path for path in code if not any(_covers(dep, path) for dep in deps))
    unused = sorted(dep for dep in deps if not any(_covers(dep, path) for path in code))
    assert missing == [], f"dvc.yaml stage {stage} runs code it does not list as deps"
    assert unused == [], f"dvc.yaml stage {stage} lists deps it does not import"
