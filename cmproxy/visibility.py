"""Read-after-write that may lag: re-read until a write shows, bounded in time.

On a hierarchy, a change a provider accepts for a child site's server may show in reads only
once the child site has processed it (site control data replicated, [UNCONFIRMED]; see
docs/transactions.md, "Read-after-write lag"). So a re-read that still shows the *old* value
is "not visible yet", not a failure: `reread_until_visible` reads again, with backoff, until
the value is no longer the old one or `RetryPolicy.visibility_timeout` has passed. A value
that is neither old nor new stops the wait at once (the caller decides what it is: someone
else's change), so a site without lag never waits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import attrs
import tenacity

from cmproxy.retry import RetryPolicy

__all__ = ["Visibility", "reread_until_visible"]

T = TypeVar("T")


@attrs.frozen
class Visibility(Generic[T]):
    """The end of a wait: the last value read and whether it was still the old one."""

    value: T
    #: False: the last read still showed the old value when the bound ran out.
    visible: bool
    #: Seconds from the start of the wait to the last read (the policy's clock).
    waited: float
    #: Reads made.
    reads: int


def reread_until_visible(
    read: Callable[[], T],
    still_old: Callable[[T], bool],
    policy: RetryPolicy,
    *,
    delay_first: bool = False,
) -> Visibility[T]:
    """Read, and read again while `still_old(value)`, for at most `policy.visibility_timeout`.

    Backoff starts at `policy.visibility_backoff` and doubles up to `policy.max_backoff`
    (sleeping with `policy.sleep`, timed by `policy.clock`). `delay_first`: the caller has
    just read the old value itself, so wait one backoff before the first read. `read` should
    retry its own transient failures (e.g. through `policy.call`); its errors propagate.
    A public helper: `cmproxy doctor --write-test` measures a site's read-after-write delay
    with it (`waited`).
    """
    start = policy.clock()
    timeout = policy.visibility_timeout
    if delay_first and policy.visibility_backoff <= timeout:
        policy.sleep(policy.visibility_backoff)

    def wait(retry_state: tenacity.RetryCallState) -> float:
        n = min(retry_state.attempt_number + (1 if delay_first else 0), 32)
        return float(min(policy.max_backoff, policy.visibility_backoff * (2 ** (n - 1))))

    def stop(retry_state: tenacity.RetryCallState) -> bool:
        upcoming = retry_state.upcoming_sleep or 0.0
        return policy.clock() - start + upcoming > timeout

    def last_value(retry_state: tenacity.RetryCallState) -> object:
        # The bound ran out while still old: the last value read, not a tenacity RetryError.
        assert retry_state.outcome is not None
        return retry_state.outcome.result()

    retrying = tenacity.Retrying(
        stop=stop,
        wait=wait,
        retry=tenacity.retry_if_result(still_old),
        sleep=policy.sleep,
        retry_error_callback=last_value,
    )
    reads = 0

    def counted() -> T:
        nonlocal reads
        reads += 1
        return read()

    value: T = retrying(counted)
    return Visibility(value, not still_old(value), policy.clock() - start, reads)
