"""The package layout: one stage per subpackage, data flowing one way, no import cycles,
and a light ``import listenkit``. Imports are read with ``ast`` (nothing is executed)."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import listenkit

PACKAGE = Path(listenkit.__file__).resolve().parent

# Stage rank: a module may import its own stage or lower ranks, never a higher one.
# ``stats`` is pure numpy (rank 0: anything may use it, it uses nothing).
STAGES = {
    "_lazy": 0,
    "_version": 0,
    "codec": 0,  # cache files that never run code (numpy and json only)
    "checkpoint_file": 0,  # a batch checkpoint's stored layout
    "stage_origin": 0,  # an adopted cache entry's record (read by the cache and by status)
    "stats": 0,
    "models": 1,
    "stimuli": 2,
    "engine": 3,
    "planted": 3,
    "analyses": 4,
    "report": 5,
    "experiments": 6,  # the paper's experiments as pure functions (no pytest)
    "claims": 7,  # the pytest plugin: sits above everything it judges
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(name: str) -> set[str]:
    """listenkit modules that ``name`` imports anywhere in its body (``TYPE_CHECKING``
    blocks excepted: they never run)."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("listenkit"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base.startswith("listenkit"):
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    found.add(sub if sub in MODULES else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: _imports(name) for name in MODULES}


def _stage(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else None


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := dfs(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_every_module_belongs_to_a_stage():
    unknown = {n for n in MODULES if n != "listenkit" and _stage(n) not in STAGES}
    assert not unknown, f"modules outside the pipeline's stages: {sorted(unknown)}"


def test_lower_stages_never_import_higher_ones():
    bad = [
        f"{src} ({_stage(src)}) imports {dst} ({_stage(dst)})"
        for src, targets in GRAPH.items()
        if src != "listenkit"
        for dst in targets
        if dst != "listenkit"
        and _stage(src) != _stage(dst)
        and STAGES[_stage(dst)] >= STAGES[_stage(src)]
    ]
    assert not bad, "data must flow one way:\n" + "\n".join(sorted(bad))


def test_nothing_below_the_plugin_imports_pytest():
    """Experiments are pure functions: pytest objects stay in ``listenkit.claims``."""
    offenders = [
        name
        for name, path in MODULES.items()
        if _stage(name) != "claims"
        and re.search(r"^\s*(import|from) pytest", path.read_text(), re.M)
    ]
    assert not offenders, f"pytest imported below the claims plugin: {offenders}"


def test_backends_do_not_import_each_other():
    assert "listenkit.engine.backends.hooks" not in GRAPH["listenkit.engine.backends.nnsight"]
    assert "listenkit.engine.backends.nnsight" not in GRAPH["listenkit.engine.backends.hooks"]


def test_import_listenkit_and_stats_is_light():
    code = (
        "import sys, listenkit, listenkit.stats\n"
        "heavy = [m for m in ('torch', 'whisper', 'transformers', 'nnsight') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import listenkit/listenkit.stats loaded {out.stdout}"


LAZY = [
    n for n, p in MODULES.items() if p.name == "__init__.py" and "lazy_exports" in p.read_text()
]


@pytest.mark.parametrize("package", LAZY)
def test_lazy_exports_resolve(package):
    from listenkit._lazy import exports_of

    module = importlib.import_module(package)
    exports = exports_of(MODULES[package])
    assert exports, f"{package} lists no public names under TYPE_CHECKING"
    expected = {*exports, "__version__"} if package == "listenkit" else set(exports)
    assert set(module.__all__) == expected
    for name in exports:
        assert getattr(module, name) is not None
    with pytest.raises(AttributeError, match="no attribute"):
        module.no_such_name  # noqa: B018
