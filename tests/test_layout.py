"""The package's structure: no module-level import cycle, and the layers import downward only."""

from __future__ import annotations

import ast
from pathlib import Path

import scaleml_dask

ROOT = Path(scaleml_dask.__file__).resolve().parent
PACKAGE = "scaleml_dask"


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join((PACKAGE, *parts))] = path
    return out


def _module_level_imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Package modules imported when ``name`` is imported (top-level statements; TYPE_CHECKING blocks and
    imports inside functions excluded)."""
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    found = set()
    stmts = list(ast.parse(path.read_text()).body)
    for stmt in stmts:
        if isinstance(stmt, ast.If) and "TYPE_CHECKING" in ast.unparse(stmt.test):
            continue
        if isinstance(stmt, (ast.If, ast.Try)):
            stmts.extend(stmt.body)
            continue
        if isinstance(stmt, ast.Import):
            found |= {a.name for a in stmt.names if a.name.startswith(PACKAGE)}
        elif isinstance(stmt, ast.ImportFrom):
            if stmt.level:
                target = ".".join(base[: len(base) - stmt.level + 1] + ([stmt.module] if stmt.module else []))
            else:
                target = stmt.module or ""
            if not target.startswith(PACKAGE):
                continue
            subs = {f"{target}.{a.name}" for a in stmt.names} & set(modules)
            found |= subs if subs else {target}
    return {m for m in found if m in modules and m != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _module_level_imports(name, path, modules) for name, path in modules.items()}


def test_no_module_level_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)
    assert "scaleml_dask.io.catalog" in graph and graph["scaleml_dask.io.catalog"]  # the parse found imports


def _imports_anywhere(path: Path) -> set[str]:
    """Every package module a file imports, at any depth (function-level lazy imports included)."""
    modules = _modules()
    name = next(n for n, p in modules.items() if p == path)
    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            target = (".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
                      if node.level else node.module or "")
            found.add(target)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {m for m in found if m.startswith(PACKAGE)}


#: Block kernels: pure functions on numpy blocks, below the pass driver and everything else.
KERNELS = ("_checks.py", "_math.py", "_optim.py", "_tsqr.py", "_kmeans_kernels.py", "sgd/_kernels.py", "sgd/_blocks.py",
           "sgd/_sparse.py", "online/_status.py", "online/_linear_kernels.py", "online/_rls_kernels.py",
           "online/_kmeans_kernels.py", "online/_drift_kernels.py", "feature_extraction/_hashing.py", "_sketch.py",
           "preprocessing/_kernels.py", "_folds.py", "_cv_kernels.py", "_scratch.py", "metrics/_states.py",
           "model_selection/_fused_kernels.py")
_KERNEL_MODULES = tuple(f"{PACKAGE}.{k[:-3].replace('/', '.')}" for k in KERNELS)


def _layer(rel: Path) -> str | None:
    if rel.as_posix() in KERNELS:
        return "kernels"
    if rel.parts[0] == "io":
        return "io"
    return {"validation.py": "validation", "_tabular.py": "validation", "passes.py": "passes"}.get(rel.as_posix())


def test_lower_layers_never_import_upper_layers():
    """Kernels at the bottom import only other kernels; io may use only itself and the dependency-free
    ``_math`` / ``_checks``; validation uses io; the pass driver uses io (and kernels), nothing above it."""
    low = ("scaleml_dask._math", "scaleml_dask._checks")
    allowed = {"kernels": _KERNEL_MODULES,
               "io": ("scaleml_dask.io", *low),
               "validation": ("scaleml_dask.io", "scaleml_dask.validation", "scaleml_dask._tabular", *low),
               "passes": ("scaleml_dask.io", "scaleml_dask.passes", *_KERNEL_MODULES)}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        layer = _layer(rel)
        if layer is None:
            continue
        bad = {m for m in _imports_anywhere(path) if not m.startswith(allowed[layer]) and m != PACKAGE}
        assert not bad, f"{rel} ({layer} layer) imports {sorted(bad)}"
