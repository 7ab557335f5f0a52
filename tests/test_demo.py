"""`make demo`'s steps, for real: migrate, seed once, serve with an embedded Redis and a worker, stop."""
import http.cookiejar
import os
import re
import signal
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from tests.helpers import DEMO, ROOT, demo_env, flask, free_port, get

@pytest.mark.slow
def test_demo_migrates_seeds_once_serves_and_stops(tmp_path):
    env = demo_env(tmp_path)
    assert flask(["db", "upgrade"], env).returncode == 0
    first = flask(["seed-demo"], env)
    assert first.returncode == 0 and "Seeded the demo store" in first.stdout
    second = flask(["seed-demo"], env)
    assert second.returncode == 0 and "not seeding it again" in second.stdout
    images = list((tmp_path / "instance" / "uploads" / "products").glob("*.png"))
    assert len(images) == 50 and all(p.read_bytes().startswith(b"\x89PNG") for p in images)

    port = free_port()
    server = subprocess.Popen(DEMO + ["--port", str(port)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                status, login_page = get(f"{base}/login")
                break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                assert time.monotonic() < deadline, "the demo did not start serving within 30 s"
                time.sleep(0.2)
        assert status == 200 and 'name="csrf_token"' in login_page
        status, shop = get(f"{base}/")
        assert status == 200 and "/uploads/products/0001.png" in shop
    finally:
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=30)
    assert server.returncode == 0, output
    assert "super@demo.test" in output and "platform@demo.test" in output and "demo1234" in output
    # One off-site destination out of the box: a local SeaweedFS, keys in the environment, not the database.
    assert "Off-site copies: to the bucket demo-offsite" in output
    listed = flask(["backup", "destinations", "list"], env)
    assert listed.returncode == 0 and "demo-offsite" in listed.stdout and "DEMO_OFFSITE" in listed.stdout


def log_in(base):
    """A cookie-keeping opener logged in as the demo's super-admin."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    page = opener.open(f"{base}/login", timeout=5).read().decode()
    field = re.search(r'<input[^>]*name="csrf_token"[^>]*>', page).group(0)
    token = re.search(r'value="([^"]+)"', field).group(1)
    form = urllib.parse.urlencode({"csrf_token": token, "email": "super@demo.test", "password": "demo1234"}).encode()
    assert opener.open(f"{base}/login", data=form, timeout=5).geturl().endswith("/admin/")
    return opener


def backup_card(opener, base):
    page = opener.open(f"{base}/admin/tools/backup/", timeout=5).read().decode()
    return re.search(r'data-card="backup" aria-disabled="(\w+)"', page).group(1)


@pytest.mark.slow
def test_make_demo_takes_a_port_listens_on_both_loopbacks_and_the_readme_outside_network_steps_work(tmp_path):
    """`make demo PORT=…` as the README gives it; then the README's steps to see the wizard from outside the
    maintainer networks: remove 127.0.0.1/32, and 127.0.0.1 sees Backup disabled while [::1] still may."""
    env, port = demo_env(tmp_path), free_port()
    demo = subprocess.Popen(["make", "--no-print-directory", "demo", f"PORT={port}"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    v4, v6 = f"http://127.0.0.1:{port}", f"http://[::1]:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                assert get(f"{v4}/login")[0] == 200 and get(f"{v6}/login")[0] == 200
                break
            except OSError:
                assert demo.poll() is None, demo.stdout.read()
                assert time.monotonic() < deadline, "make demo did not serve on both loopback addresses"
                time.sleep(0.3)
        assert backup_card(log_in(v4), v4) == "false"
        assert flask(["maintainers", "remove", "127.0.0.1/32"], env).returncode == 0
        assert backup_card(log_in(v4), v4) == "true"   # 127.0.0.1 is outside now: Backup disabled
        assert backup_card(log_in(v6), v6) == "false"  # ::1 is still a maintainer network
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        output, _ = demo.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}/" in output and f"Also listening on http://[::1]:{port}/" in output


def test_a_migrated_sqlite_store_backs_up_and_restores_its_database_file_from_the_command_line(tmp_path):
    """The demo's store, made by the migrations (its alembic_version holds the head, which platform-only
    migrations move past the store's schema revision): its backup holds the database file, which inspects and
    restores page for page, and the store keeps its own revision."""
    import sqlite3
    import zipfile

    env = demo_env(tmp_path)
    assert flask(["db", "upgrade"], env).returncode == 0
    assert flask(["seed-demo"], env).returncode == 0
    store = tmp_path / "instance" / "store.db"
    revision = sqlite3.connect(store).execute("SELECT version_num FROM alembic_version").fetchall()
    made = flask(["backup", "create", "--parts", "both"], env)
    assert made.returncode == 0, made.stderr
    archive = made.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(archive) as z:
        assert "database/store.sqlite.zst" in z.namelist()
    inspected = flask(["backup", "inspect", archive.rsplit("/", 1)[-1]], env)
    assert inspected.returncode == 0, inspected.stderr
    with sqlite3.connect(store) as c:
        lines = c.execute("SELECT count(*) FROM order_lines").fetchone()[0]
        c.execute("DELETE FROM order_lines")
    restored = flask(["backup", "restore", archive, "--parts", "both", "--yes"], env)
    assert restored.returncode == 0, restored.stderr
    with sqlite3.connect(store) as c:
        assert c.execute("SELECT count(*) FROM order_lines").fetchone()[0] == lines > 0
        assert c.execute("SELECT version_num FROM alembic_version").fetchall() == revision
