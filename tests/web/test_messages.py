"""What the page says while a run goes: a time left only once it means something."""
import pytest

from app.backup.views import time_left


@pytest.mark.parametrize("elapsed, done, total, expected", [
    (1, 10, 100, None),        # one second in: too early whatever the count says
    (60, 1, 1000, None),       # a minute in but 0.1 % done: an estimate would read "about 17 h"
    (60, 0, 100, None),        # nothing counted yet
    (60, 100, 100, None),      # done: nothing left to estimate
    (10, 5, None, None),       # no total known
    (10, 10, 100, 90),         # 10 % in 10 s: 90 s left
    (30, 50, 100, 30),
])
def test_time_left_waits_for_enough_progress(elapsed, done, total, expected):
    assert time_left(elapsed, done, total) == expected
