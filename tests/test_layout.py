"""The package's shape: its parts, no import circle, no module over 400 lines, and the layers
contract that `make test` checks with import-linter."""

import ast
from pathlib import Path

import nbkit

PACKAGE = Path(nbkit.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str]) -> set[str]:
    """The nbkit modules a file imports, at any depth of the file (lazy imports count)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:  # `from . import x` imports module x; `from .m import f` imports m
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(f) for f in files}
    return {module_name(f): imports(f, modules) for f in files}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle, as the path of modules that closes it."""
    found, done = [], set()

    def visit(node, path):
        if node in path:
            found.append(path[path.index(node):] + [node])
            return
        if node in done:
            return
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, path + [node])
        done.add(node)

    for node in sorted(graph):
        visit(node, [])
    return found


def test_no_module_imports_one_that_imports_it_back():
    assert cycles(import_graph()) == []


def test_the_cycle_check_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


PARTS = ("design", "training", "rundir", "sweeps", "analysis", "view", "cli")
MAX_LINES = 400


def test_no_module_is_over_400_lines():
    long = {str(f.relative_to(PACKAGE.parent)): n for f in sorted(PACKAGE.rglob("*.py"))
            if (n := len(f.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_every_module_lives_in_a_part_and_every_part_has_its_tests():
    """nbkit's rooms are its parts (README, Layout); the tests follow the same parts."""
    loose = {f.name for f in PACKAGE.glob("*.py")} - {"__init__.py", "__main__.py", "errors.py"}
    assert loose == set()
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"} == set(PARTS)
    tests = Path(__file__).parent
    assert {p.name for p in tests.iterdir() if p.is_dir() and p.name != "__pycache__"} == set(PARTS)
    assert all(list((tests / part).glob("test_*.py")) for part in PARTS)


def test_the_layers_contract_fails_on_a_planted_forbidden_import(tmp_path):
    """`make test` runs lint-imports on pyproject.toml's contract; the same contract breaks on a copy
    of the package where the run-folder reader imports the trainer."""
    import shutil
    import subprocess
    import sys

    shutil.copytree(PACKAGE, tmp_path / "nbkit", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PACKAGE.parent / "pyproject.toml", tmp_path)
    lint = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command as c; "
            "sys.exit(c(['--no-cache']))"]
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    clean = subprocess.run(lint, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    with open(tmp_path / "nbkit" / "rundir" / "reader.py", "a") as f:
        f.write("\nfrom nbkit.training import trainer  # planted\n")
    planted = subprocess.run(lint, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert planted.returncode != 0
    assert "The run-folder contract imports neither the trainer nor the analysis BROKEN" in planted.stdout
