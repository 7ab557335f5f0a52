"""The store's operation lock on a real Redis: atomic, exclusive, and taken over only from the dead."""
import threading

import pytest
from redis import Redis

from app.queue import OperationLock


@pytest.fixture
def redis(redis_url):
    connection = Redis.from_url(redis_url)
    connection.flushdb()
    yield connection
    connection.close()


def never_dead(_holder):
    return False


def test_second_acquire_is_refused_until_release(redis):
    lock = OperationLock(redis, "shop")
    assert lock.acquire("run-1", never_dead)
    assert not lock.acquire("run-2", never_dead)
    assert lock.holder() == "run-1"
    assert not lock.release("run-2")  # only the holder releases
    assert lock.release("run-1")
    assert lock.acquire("run-2", never_dead)


def test_dead_holder_is_replaced(redis):
    lock = OperationLock(redis, "shop")
    assert lock.acquire("crashed", never_dead)
    assert lock.acquire("next", lambda holder: holder == "crashed")
    assert lock.holder() == "next"


def test_simultaneous_starts_have_exactly_one_winner(redis):
    lock = OperationLock(redis, "shop")
    barrier = threading.Barrier(16)
    winners = []

    def contender(n):
        barrier.wait()
        if lock.acquire(f"run-{n}", never_dead):
            winners.append(n)

    threads = [threading.Thread(target=contender, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1


def test_simultaneous_takeovers_of_a_dead_holder_have_one_winner(redis):
    lock = OperationLock(redis, "shop")
    assert lock.acquire("crashed", never_dead)
    barrier = threading.Barrier(16)
    winners = []

    def contender(n):
        barrier.wait()
        if lock.acquire(f"run-{n}", lambda holder: holder == "crashed"):
            winners.append(n)

    threads = [threading.Thread(target=contender, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    assert lock.holder() == f"run-{winners[0]}"


def test_locks_are_per_store(redis):
    assert OperationLock(redis, "shop-a").acquire("a", never_dead)
    assert OperationLock(redis, "shop-b").acquire("b", never_dead)


def test_a_running_holder_takes_back_a_lock_that_vanished(app, redis):
    """Redis restarted empty while a restore still runs: its next heartbeat holds the store again."""
    from app.operations.runs import Heartbeat

    lock = OperationLock(redis, app.config["STORE_NAME"])
    assert lock.acquire("run-1", never_dead)
    heartbeat = Heartbeat(app, redis, "run-1", lock=lock)
    redis.flushdb()  # what a restart of a Redis that keeps nothing on disk does
    heartbeat.beat()
    assert lock.holder() == "run-1"
    assert not lock.acquire("run-2", never_dead)
    assert lock.acquire("run-3", lambda holder: holder == "run-1")  # only a dead holder is replaced
    heartbeat.beat()
    assert lock.holder() == "run-3"  # never snatched back from a live holder
