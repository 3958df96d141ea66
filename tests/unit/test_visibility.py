"""`reread_until_visible`: re-read only while the value is still the old one, bounded in time.

Time is the policy's injected clock and sleep: nothing here sleeps.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cmproxy import reread_until_visible
from cmproxy.retry import RetryPolicy


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def policy(self, bound: float) -> RetryPolicy:
        return RetryPolicy(
            visibility_timeout=bound,
            visibility_backoff=0.25,
            max_backoff=2.0,
            sleep=self.sleep,
            clock=lambda: self.now,
        )


def _reads(*values: str) -> Iterator[str]:
    yield from values
    while True:
        yield values[-1]


def test_a_new_value_at_once_never_waits() -> None:
    t = FakeTime()
    seen = reread_until_visible(lambda: "new", lambda v: v == "old", t.policy(30))
    assert (seen.value, seen.visible, seen.reads, t.slept) == ("new", True, 1, [])


def test_someone_elses_value_ends_the_wait_at_once() -> None:
    t = FakeTime()
    values = _reads("old", "theirs")
    seen = reread_until_visible(lambda: next(values), lambda v: v == "old", t.policy(30))
    assert (seen.value, seen.visible, seen.reads) == ("theirs", True, 2)
    assert t.slept == [0.25]


def test_the_old_value_is_re_read_with_growing_backoff_until_it_changes() -> None:
    t = FakeTime()
    values = _reads("old", "old", "old", "old", "new")
    seen = reread_until_visible(lambda: next(values), lambda v: v == "old", t.policy(30))
    assert (seen.value, seen.visible, seen.reads) == ("new", True, 5)
    assert t.slept == [0.25, 0.5, 1.0, 2.0]  # capped by max_backoff
    assert seen.waited == sum(t.slept)


def test_still_old_when_the_bound_runs_out_is_reported_not_raised() -> None:
    t = FakeTime()
    seen = reread_until_visible(lambda: "old", lambda v: v == "old", t.policy(3))
    assert (seen.value, seen.visible) == ("old", False)
    assert sum(t.slept) <= 3  # no sleep starts that would end past the bound


def test_delay_first_waits_before_the_first_read() -> None:
    t = FakeTime()
    stamps: list[float] = []

    def read() -> str:
        stamps.append(t.now)
        return "new"

    reread_until_visible(read, lambda v: v == "old", t.policy(30), delay_first=True)
    assert stamps == [0.25]


def test_a_read_error_propagates() -> None:
    t = FakeTime()

    def read() -> str:
        raise RuntimeError("read failed")

    with pytest.raises(RuntimeError, match="read failed"):
        reread_until_visible(read, lambda v: v == "old", t.policy(30))


def test_a_bound_of_zero_reads_once() -> None:
    t = FakeTime()
    seen = reread_until_visible(lambda: "old", lambda v: v == "old", t.policy(0), delay_first=True)
    assert (seen.visible, seen.reads, t.slept) == (False, 1, [])


def test_a_negative_bound_is_refused() -> None:
    with pytest.raises(ValueError, match="visibility_timeout"):
        RetryPolicy(visibility_timeout=-1)
