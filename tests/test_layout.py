"""The tree's shape: each package imports only the packages below it, and no module imports
itself back through others, at run time or for the type checker (imports inside functions and
under `TYPE_CHECKING` count too).

    bench -> pipeline -> reports -> config -> workers

(an arrow: "may import"; every package may import any package to its right). README.md,
"Layout", shows the same picture.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Each package and the project packages it may import, lowest first.
ORDER = ("workers", "config", "reports", "pipeline", "bench")


def _modules() -> dict[str, Path]:
    found = {}
    for package in ORDER:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The project modules `path` imports, anywhere in the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                targets.add(submodule if submodule in modules else base)
    return {target for target in targets if target in modules and target != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, name, modules) for name, path in modules.items()}


def test_every_package_imports_only_the_packages_below_it():
    wrong = []
    for name, targets in _graph().items():
        rank = ORDER.index(name.split(".")[0])
        wrong += [f"{name} imports {target}" for target in sorted(targets) if ORDER.index(target.split(".")[0]) > rank]
    assert not wrong, "imports against the layout (README, Layout):\n" + "\n".join(wrong)


def test_no_module_imports_itself_back():
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []
    circles: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                circles.append(" -> ".join([*path[path.index(target):], target]))
            elif target not in state:
                visit(target)
        path.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
    assert not circles, "import circles:\n" + "\n".join(circles)


@pytest.mark.parametrize("package", ORDER)
def test_every_package_is_checked(package):
    # A package missing from ORDER would be invisible to the two tests above.
    assert (ROOT / package / "__init__.py").is_file()
    assert any(name.startswith(package) for name in _graph())


def test_rays_code_fingerprint_covers_every_package_a_run_imports():
    # Nodes of a Ray run compare a digest of these folders (pipeline/cluster.py); a package a
    # run imports but the digest leaves out could differ between nodes unnoticed.
    from pipeline.cluster import CODE_FOLDERS

    graph = _graph()
    reached, todo = set(), [name for name in graph if name.startswith("pipeline")]
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo.extend(graph[name])
    assert {name.split(".")[0] for name in reached} <= set(CODE_FOLDERS)
