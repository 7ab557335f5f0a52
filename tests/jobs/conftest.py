"""Job fixtures: a real RQ worker in burst mode on the real Redis, running jobs in the test's app."""
import pytest

from jobs.context import use_app
from jobs.worker import make_worker


@pytest.fixture
def run_worker(app):
    """Run every queued job to completion in a forked work horse, like production does."""

    def run():
        use_app(app)
        worker = make_worker(app)
        worker.work(burst=True, logging_level="ERROR", with_scheduler=False)
        return worker

    return run
