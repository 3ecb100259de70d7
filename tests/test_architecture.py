"""The package's shape: no import cycles, a lazy and documented public API."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import clipfuse

SRC = Path(clipfuse.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, package: str) -> set[str]:
    """Every clipfuse module imported anywhere in the file (functions included), except under
    ``if TYPE_CHECKING:`` (type hints only, never executed)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("clipfuse"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + [base]
                )
            if base.startswith("clipfuse"):
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph() -> dict[str, set[str]]:
    """Module -> clipfuse modules it imports, plus the packages those imports initialise
    (importing ``a.b`` runs ``a/__init__`` first). A module's own enclosing packages are left
    out: they are always initialised before it, so they cannot wait on it."""
    files = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        own = set(_ancestors(name)) | {name}
        targets = {t for t in _imports(ast.parse(path.read_text()), package) if t in files}
        edges = set(targets)
        for t in targets:
            edges.update(_ancestors(t))
        graph[name] = {e for e in edges - own if e in files and e != "clipfuse"}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := dfs(node)):
            return cycle
    return None


def test_find_cycle_detects_a_planted_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_inside_clipfuse() -> None:
    graph = import_graph()
    assert len(graph) > 90  # the scan saw the whole package
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_registry_imports_no_combiner() -> None:
    graph = import_graph()
    assert graph["clipfuse.combiners.registry"] <= {"clipfuse.errors", "clipfuse.combiners"}


def test_import_clipfuse_is_lazy_and_versioned() -> None:
    code = (
        "import sys, clipfuse; print(clipfuse.__version__); "
        "print(sorted(m for m in ('torch', 'open_clip', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    version, heavy = out.stdout.split("\n")[:2]
    assert version and version[0].isdigit()
    assert heavy == "[]"


def test_every_public_name_resolves_and_user_objects_are_documented() -> None:
    for name in clipfuse.__all__:
        value = getattr(clipfuse, name)
        if isinstance(value, type) or callable(value):
            assert (value.__doc__ or "").strip(), f"clipfuse.{name} has no docstring"
    for name in ("ViewBundle", "SavedEnsemble", "EvaluationResult", "HoldoutDraw", "Combiner"):
        assert len(getattr(clipfuse, name).__doc__) > 80, name
    assert clipfuse.Ensemble is clipfuse.SavedEnsemble
    assert issubclass(clipfuse.NotFittedError, ValueError)
    assert issubclass(clipfuse.NotFittedError, clipfuse.ClipfuseError)
    try:
        clipfuse.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("unknown attribute must raise AttributeError")
