"""The scheduler process: start each due scheduled backup, every SCHEDULER_INTERVAL seconds.

    python -m jobs.scheduler [--interval SECONDS]     (or: flask backup scheduler)

Production runs one such process next to the `rq worker` processes (a second one, for availability, is
harmless); `make demo` runs the same loop in a thread of its one process (jobs.demo). Cron can instead call
`flask backup scheduler --once` every minute.

Why our own tick and not `rq worker --with-scheduler`: RQ's scheduler only delays single jobs, it has no
recurring slots. Our slots live in the platform database, where the run's primary key (schedule id + slot
time) makes each slot start exactly once across scheduler processes and restarts, and the missed-slot rule
(after downtime the latest missed slot runs once, not once per missed slot) needs the schedule's last_slot.
The tick itself is app.operations.schedules.tick; its loop, run_scheduler, lives there too so that the
`flask backup scheduler` command can run it without the CLI importing jobs.
"""
import argparse
import logging
import signal
import threading

from app import create_app
from app.operations.schedules import run_scheduler


def start_in_thread(app, *, interval=None):
    """The loop in a daemon thread (the demo); returns (thread, stop_event): set the event, join the thread."""
    stop = threading.Event()
    thread = threading.Thread(target=run_scheduler, args=(app,), name="scheduler", daemon=True,
                              kwargs={"interval": interval or app.config["SCHEDULER_INTERVAL"], "stop_event": stop})
    thread.start()
    return thread, stop


def main(argv=None):
    parser = argparse.ArgumentParser(description="Start due scheduled backups; the workers run them.")
    parser.add_argument("--interval", type=int, help="Seconds between ticks (default: SCHEDULER_INTERVAL).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = create_app()
    if not app.config.get("REDIS_URL"):
        parser.error("set REDIS_URL to the workers' Redis: the scheduler queues backups for them "
                     "(make demo runs its own scheduler).")
    stop = threading.Event()
    for received in (signal.SIGTERM, signal.SIGINT):
        signal.signal(received, lambda *_: stop.set())
    run_scheduler(app, interval=args.interval or app.config["SCHEDULER_INTERVAL"], stop_event=stop)


__all__ = ["run_scheduler", "start_in_thread", "main"]

if __name__ == "__main__":
    main()
