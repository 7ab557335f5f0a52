"""Helpers shared by the tests: accounts, clients, processes, waiting. Test modules import from here,
never from a conftest or another test module."""
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
from werkzeug.security import generate_password_hash

from app import create_app
from app.extensions import db
from app.operations import Caller
from app.operations.runs import start_run

ROOT = Path(__file__).resolve().parent.parent
FLASK = [sys.executable, "-m", "flask"]
# `make demo`'s server: the web app, an embedded Redis and a worker in one process.
DEMO = [sys.executable, "-m", "jobs.demo"]
PASSWORD = "correct horse battery"
# Fast hashing keeps the suite quick; production uses werkzeug's default (scrypt).
FAST_HASH = generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")
ROLES = ("vendor", "manager", "admin", "super_admin")
MAINTAINER_IP = "198.51.100.10"
OUTSIDE_IP = "203.0.113.7"
SUPER_ADMIN = Caller("user:super_admin@test.example", MAINTAINER_IP)
POSTGRES_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
TTL = 2  # heartbeat TTL of the fault tests: a dead worker's run reads as lost after this many seconds


def required(variable):
    """In CI these variables turn a missing service into a failure instead of a skip."""
    return os.environ.get(variable) == "1"


def app_overrides(tmp_path, redis_url, **extra):
    return {
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'store.db'}",
        "SQLALCHEMY_BINDS": {"platform": f"sqlite:///{tmp_path / 'platform.db'}"},
        "UPLOADS_DIR": str(tmp_path / "uploads"),
        "BACKUPS_DIR": str(tmp_path / "backups"),
        "REDIS_URL": redis_url,
        **extra,
    }


def client_at(app, address):
    """A test browser whose requests come from this socket peer address."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def login(client, email, password=PASSWORD, path="/login"):
    """Log in through the real form, CSRF token included."""
    page = client.get(path)
    token = csrf_token_from(page)
    return client.post(path, data={"email": email, "password": password, "csrf_token": token})


def csrf_token_from(response):
    match = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', response.data) or re.search(
        rb'name="csrf_token" value="([^"]+)"', response.data
    )
    assert match, "no CSRF token in the page"
    return match.group(1).decode()


def make_worker_app(tmp_path, redis_url, ttl=TTL):
    keys = {"SECRET_KEY": "kill-test-secret", "BACKUP_SIGNING_KEY": "kill-test-signing", "JOB_HEARTBEAT_TTL": ttl}
    app = create_app("testing", app_overrides(tmp_path / "instance", redis_url, **keys))
    app.worker_env = {**os.environ, "INSTANCE_DIR": str(tmp_path / "instance"), "REDIS_URL": redis_url,
                      **{k: str(v) for k, v in keys.items()}}
    with app.app_context():
        db.create_all()
    return app


def dispose(app):
    with app.app_context():
        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()


def rq_worker(env):
    """The production worker command, as the README gives it."""
    rq = Path(sys.executable).with_name("rq")
    return subprocess.Popen([str(rq), "worker", "--serializer", "rq.serializers.JSONSerializer",
                             "--worker-class", "jobs.worker.StoreWorker", "--url", env["REDIS_URL"], "backup"],
                            cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill_tree(process):
    try:
        family = psutil.Process(process.pid).children(recursive=True) + [psutil.Process(process.pid)]
    except psutil.NoSuchProcess:
        family = []
    for p in family:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    process.wait(timeout=10)


def wait_for(condition, timeout=60, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demo_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "PLATFORM_DATABASE_URL")}
    env.update(FLASK_APP="wsgi:app", INSTANCE_DIR=str(tmp_path / "instance"), PYTHONUNBUFFERED="1")
    return env


def get(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode()


def flask(args, env):
    return subprocess.run(FLASK + args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def start(kind, caller=SUPER_ADMIN, **fields):
    """Start a run as the wizard does (inside an app and request context)."""
    return start_run(kind, caller, **fields)


def is_checked(html, name, value):
    """Is the input with this name and value rendered checked? (attribute order does not matter)"""
    for tag in re.findall(rb"<input[^>]*>", html):
        if re.search(rb'name="%s"' % name.encode(), tag) and re.search(rb'value="%s"' % value.encode(), tag):
            return re.search(rb"\schecked[\s>=/]", tag) is not None
    raise AssertionError(f"no input {name}={value} in the page")


# The browser tests' demo server and page helpers (Debian's Chromium, driven by Playwright).
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")


# The flags this machine's Chromium needs: no sandbox as root, no network beyond localhost.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


SCREENSHOTS = os.environ.get("SCREENSHOTS_DIR")


class DemoServer:
    def __init__(self, tmp_path, maintainer_networks=None):
        self.env = demo_env(tmp_path)
        self.instance = tmp_path / "instance"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        assert flask(["db", "upgrade"], self.env).returncode == 0
        assert flask(["seed-demo"], self.env).returncode == 0
        if maintainer_networks is not None:
            for cidr in ("127.0.0.1/32", "::1/128"):
                assert flask(["maintainers", "remove", cidr], self.env).returncode == 0
            for cidr in maintainer_networks:
                assert flask(["maintainers", "add", cidr, "--label", "test"], self.env).returncode == 0
        self.process = subprocess.Popen(DEMO + ["--port", str(self.port)], cwd=ROOT, env=self.env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/login", timeout=2).close()
                break
            except OSError:
                assert self.process.poll() is None, self.process.stdout.read()
                assert time.monotonic() < deadline, "demo server did not start"
                time.sleep(0.2)

    def flask(self, args):
        return flask(args, self.env)

    def stop(self):
        self.process.send_signal(signal.SIGINT)
        try:
            output, _ = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            output, _ = self.process.communicate()
        return output


def log_in_page(page, server, email="super@demo.test", password="demo1234"):
    page.goto(f"{server.url}/login")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server.url}/admin/")


def open_wizard(page, server):
    page.goto(f"{server.url}/admin/tools/backup/")
    page.wait_for_function("window.htmx !== undefined")


def screenshot(page, name):
    """Screenshots for people to look at, written only when SCREENSHOTS_DIR is set."""
    if SCREENSHOTS:
        os.makedirs(SCREENSHOTS, exist_ok=True)
        page.screenshot(path=os.path.join(SCREENSHOTS, f"{name}.png"), full_page=True)

