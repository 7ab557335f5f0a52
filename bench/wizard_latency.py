"""Time from clicking Start to the Download button, in Chromium against the demo (`make demo`'s server).

    python -m bench.wizard_latency [--runs 3]

Prints, per operation, each run's seconds and the median. The demo runs its worker in-process and
spawns a work horse per job, as `make demo` does; production forks `rq worker` horses instead.
"""
import argparse
import statistics
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.helpers import CHROMIUM, CHROMIUM_ARGS, DemoServer, log_in_page, open_wizard

OPERATIONS = {
    "export": ("[data-action=export]", "#export-status"),
    "backup (both)": ("[data-action=backup]", "#backup-status"),
}


def time_operation(page, server, button, status):
    open_wizard(page, server)
    if button == "[data-action=backup]":
        page.check("input[name=parts][value=both]")
    # The reloaded page still shows the previous run's Download button; clear it so only the new one counts.
    page.evaluate("selector => { document.querySelector(selector).innerHTML = '' }", status)
    start = time.perf_counter()
    page.click(button)
    try:
        page.wait_for_selector(f"{status} [data-action=download]", timeout=120_000)
    except Exception:
        page.screenshot(path="/tmp/latency-failure.png", full_page=True)
        raise
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        server = DemoServer(Path(folder))
        try:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page()
            log_in_page(page, server)
            for name, (button, status) in OPERATIONS.items():
                times = [time_operation(page, server, button, status) for _ in range(args.runs)]
                print(f"{name:15} Start -> Download: median {statistics.median(times):.2f} s  "
                      f"(runs: {', '.join(f'{t:.2f}' for t in times)})")
            for kind in ("export", "backup"):
                path = sorted(Path(server.instance, "backups").glob(f"*-{kind}-*.zip"))[-1]
                print(f"  {path.name}: {path.stat().st_size / 1e3:.0f} KB")
            browser.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
