"""Packaging contracts: importing never flips x64; the public API is what __all__ says; CI runs the README's test command."""

import importlib
import pathlib
import re
import subprocess
import sys

import lstm_jax

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_import_does_not_enable_x64():
    code = "import jax, lstm_jax; print(jax.config.jax_enable_x64)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_all_names_exist_and_internals_stay_private():
    for name in lstm_jax.__all__:
        assert hasattr(lstm_jax, name), name
    assert not [n for n in lstm_jax.__all__ if n.startswith("_")]


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", readme, re.S)
    test_cmd = blocks[1].strip()
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd in ci


def _imports(path: pathlib.Path, package: str):
    """(module imported, names imported) for every import in ``path``, relative imports resolved."""
    import ast

    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            yield mod, [a.name for a in node.names]


def _module_of(path: pathlib.Path) -> tuple[str, str]:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    package = ".".join(parts[:-1])
    return name, package


def test_the_package_import_graph_has_no_circle():
    """Module-level and function-level imports between lstm_jax modules form a DAG — a package's own
    ``__init__`` included: a submodule that imports from the ``__init__`` that imports it is a circle."""
    def exists(target):
        return (ROOT / (target.replace(".", "/") + ".py")).is_file() or (ROOT / target.replace(".", "/")).is_dir()

    graph = {}
    for path in (ROOT / "lstm_jax").rglob("*.py"):
        name, package = _module_of(path)
        deps = set()
        for mod, names in _imports(path, package):
            if not mod or not mod.startswith("lstm_jax"):
                continue
            submodules = [f"{mod}.{n}" for n in names if exists(f"{mod}.{n}")]
            # `from package import submodule` reads no name of the package's __init__; any other name does
            reads_package = exists(mod) and (not names or len(submodules) < len(names))
            deps.update(submodules + ([mod] if reads_package else []))
        deps.discard(name)
        graph[name] = deps
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for dep in graph.get(node, ()):
            assert state.get(dep) != "open", f"import circle: {' -> '.join(stack + [node, dep])}"
            if dep not in state:
                visit(dep, stack + [node])
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node, [])


def test_the_verify_wing_uses_only_the_public_api():
    """lstm_jax/verify imports ``lstm_jax`` (public names in ``__all__``) and its own modules, nothing private."""
    for path in (ROOT / "lstm_jax" / "verify").glob("*.py"):
        _, package = _module_of(path)
        for mod, names in _imports(path, package):
            if not mod.startswith("lstm_jax"):
                continue
            if mod.startswith("lstm_jax.verify"):
                continue
            # the core's front door, or another wing's front door (io for files, experiments for the learning claim)
            assert mod in ("lstm_jax", "lstm_jax.io", "lstm_jax.experiments"), (path.name, mod)
            public = importlib.import_module(mod).__all__
            assert all(n in public for n in names), (path.name, mod, names)
    src = "".join(p.read_text() for p in (ROOT / "lstm_jax" / "verify").glob("*.py"))
    used = set(re.findall(r"\blj\.([A-Za-z_]\w*)", src))
    assert used <= set(lstm_jax.__all__), used - set(lstm_jax.__all__)


def test_repository_tooling_and_benchmarks_are_not_installed():
    """The wheel ships lstm_jax only: tools/ (README/proofs regeneration) and benchmarks/ stay in the checkout, and
    no module of the package knows the markers of README's and the proofs' generated blocks (tools/sync_docs.py
    is their one writer)."""
    import fnmatch
    import tomllib

    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"]["find"]
    packages = [p.parent.relative_to(ROOT).as_posix().replace("/", ".") for p in ROOT.glob("*/**/__init__.py")
                if ".venv" not in p.parts and "site-packages" not in p.parts]
    shipped = [p for p in packages if any(fnmatch.fnmatch(p, pat) for pat in cfg["include"])]
    assert {"lstm_jax", "lstm_jax.cli", "tools", "benchmarks"} <= set(packages)
    assert "lstm_jax.cli" in shipped and not [p for p in shipped if not p.startswith("lstm_jax")], shipped
    writers = [p.name for p in (ROOT / "lstm_jax").rglob("*.py")
               if re.search(r"<!-- \{?marker|verify-table|verify-measured|verify-errata|verify-index", p.read_text(encoding="utf-8"))]
    assert writers == [], writers
