"""The package layout is the architecture: layers import only downwards, no circles, short modules and lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "emofx"
MAX_LINES = 500
MAX_WIDTH = 120  # characters, not bytes: "±" is one
SOURCES = ("emofx", "benchmarks", "tests")  # every Python file of the repository is under one of these
# Each layer may import the layers listed for it (and itself); ``emofx`` itself is the package root.
ALLOWED = {
    "data": {"data"},
    "crowd": {"data", "crowd"},
    "nets": {"data", "nets"},
    "explain": {"data", "nets", "explain"},
    "study": {"data", "nets", "explain", "study"},
    "plotting": {"data", "explain", "study", "plotting"},
    "pipeline": {"data", "crowd", "nets", "explain", "study", "plotting", "pipeline"},
    "cli": {"data", "crowd", "nets", "explain", "study", "plotting", "pipeline", "cli"},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every emofx module ``path`` imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("emofx"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("emofx"))
    return found


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
GRAPH = {name: {m for m in _imports(path) if m in MODULES and m != name} for name, path in MODULES.items()}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else None


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_lower_layers(module):
    layer = _layer(module)
    if layer is None:
        return  # emofx/__init__.py and __main__.py: the package's front door
    wrong = sorted(m for m in GRAPH[module] if _layer(m) is not None and _layer(m) not in ALLOWED[layer])
    assert not wrong, f"{module} ({layer}) imports {wrong}, a higher layer"


def test_no_import_circle():
    # Package __init__ modules importing their own submodules are not circles of the layout.
    edges = {m: {d for d in deps if not m == d.rsplit(".", 1)[0] and not d.startswith(m + ".")}
             for m, deps in GRAPH.items()}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for dep in sorted(edges[node]):
            if state.get(dep) == 1:
                cycle = trail[trail.index(dep):] + [dep] if dep in trail else [node, dep]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, trail + [dep])
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_is_short(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[module]} has {lines} lines (limit {MAX_LINES}): split it by job"


def test_lines_are_short():
    """No line of the package, the benchmarks or the tests is longer than the project's 120 characters."""
    root = PACKAGE.parent
    long = [f"{path.relative_to(root)}:{number} ({len(line)} characters)"
            for path in sorted(p for folder in SOURCES for p in (root / folder).rglob("*.py"))
            for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1) if len(line) > MAX_WIDTH]
    assert not long, (f"{len(long)} lines longer than {MAX_WIDTH} characters: split argument lists, strings "
                      "(implicitly concatenated) or comments (onto their own lines)\n" + "\n".join(long))
