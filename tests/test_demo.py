"""`make demo`'s steps, for real: migrate, seed once, serve with an embedded Redis and a worker, stop."""
import signal
import subprocess
import time

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
