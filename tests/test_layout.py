"""The package's layout rules, checked on the source: imports run downward only (no cycle between
files, lazy imports inside functions included), evaluation never reaches models or experiments,
and no model file loads a shipped dataset."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "trafficgen"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """trafficgen modules imported anywhere in ``path`` (``from pkg import submodule`` resolved)."""
    out = set()
    tree = ast.parse(path.read_text())
    typing_only = set()  # imports under `if TYPE_CHECKING:` never run
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            typing_only.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name.startswith("trafficgen") and name in modules:
                out.add(name)
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    g = {}
    for name, path in modules.items():
        deps = _imports(path, modules) - {name}
        # a package's __init__ re-exporting its own submodules is not an upward import
        g[name] = {d for d in deps if not (path.name == "__init__.py" and d.startswith(name + "."))}
    return g


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if dep == "trafficgen" or dep.endswith("__init__"):
                continue
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycle_between_files(graph):
    # package __init__ files that only re-export lazily are edges into their package; drop them
    files = {m: {d for d in deps if _modules()[d].name != "__init__.py"} for m, deps in graph.items()
             if _modules()[m].name != "__init__.py"}
    assert _cycle(files) is None, f"import cycle: {' -> '.join(_cycle(files))}"


def test_evaluation_never_imports_models_or_experiments(graph):
    bad = {m: sorted(d for d in deps if d.startswith(("trafficgen.generators", "trafficgen.experiments",
                                                      "trafficgen.recipes", "trafficgen.cli")))
           for m, deps in graph.items() if m.startswith("trafficgen.evaluation")}
    assert not {m: d for m, d in bad.items() if d}


def test_no_model_file_loads_a_shipped_dataset(graph):
    bad = {m: sorted(d for d in deps if d.startswith("trafficgen.datasets"))
           for m, deps in graph.items() if m.startswith(("trafficgen.generators", "trafficgen.representations",
                                                         "trafficgen.estimation", "trafficgen.data"))}
    assert not {m: d for m, d in bad.items() if d}


def test_lower_layers_do_not_import_upper_ones(graph):
    order = ["errors", "_io", "_random", "data", "representations", "estimation", "generators",
             "evaluation", "experiments", "recipes", "cli"]
    rank = {name: k for k, name in enumerate(order)}

    def layer(mod: str) -> int | None:
        parts = mod.split(".")
        return rank.get(parts[1]) if len(parts) > 1 else None

    bad = []
    for m, deps in graph.items():
        lm = layer(m)
        if lm is None:
            continue
        for d in deps:
            ld = layer(d)
            if ld is not None and ld > lm:
                bad.append(f"{m} -> {d}")
    assert not bad, bad
