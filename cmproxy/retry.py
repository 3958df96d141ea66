"""Retry policy: what is transient, how often and how long to try again.

One classifier (`is_transient`) decides; only steps the caller marks idempotent are retried;
attempts *and* a deadline bound every retry; backoff is jittered and exponential; the last
real error surfaces (never a tenacity RetryError). Time is injectable, and `RetryPolicy.
for_tests()` turns backoff off.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

import attrs
import tenacity

from cmproxy._exceptions import (
    AuthenticationError,
    ConnectionError,
    PowerShellError,
    QuotaExceededError,
    TLSError,
    TransportError,
    ValidationError,
)

__all__ = ["TRANSIENT_ERROR_IDS", "RetryEvent", "RetryPolicy", "is_transient", "wait_for_quota"]

log = logging.getLogger("cmproxy.retry")

T = TypeVar("T")

#: Remote error ids that mean "busy, try again" rather than "wrong".
TRANSIENT_ERROR_IDS = frozenset(
    {
        "ProviderBusy",
        "SmsProviderBusy",
        "WmiProviderBusy",
        "ServerBusy",
        "QuotaExceeded",
        "TimedOut",
    }
)


def is_transient(error: BaseException) -> bool:
    """True for failures that a later attempt may not meet again.

    Transient: connection resets and refusals, HTTP 5xx, WSMan timeouts and busy faults, a dead
    runspace pool (all surface as `TransportError` or a plain `ConnectionError`), and remote
    "busy" error ids. Never transient: bad credentials, TLS trust, validation and rule errors,
    and any other PowerShell error (a wrong parameter stays wrong).
    """
    if isinstance(error, AuthenticationError | TLSError | ValidationError):
        return False
    if isinstance(error, TransportError):
        return getattr(error, "transient", True) is not False
    if isinstance(error, ConnectionError):
        return True
    if isinstance(error, PowerShellError):
        return error.error_id in TRANSIENT_ERROR_IDS
    return False


@attrs.frozen
class RetryEvent:
    """One retry about to happen, for hooks and logs."""

    operation: str
    attempt: int
    error: str
    wait: float


@attrs.frozen
class RetryPolicy:
    """Bounds and backoff for transient failures.

    `attempts` counts the first try; `deadline` (seconds, from the first try) stops retrying
    even when attempts remain — no retry starts whose backoff would end past it.

    `visibility_timeout` bounds read-after-write: a write accepted but whose re-read still
    shows the value from before it (on a hierarchy a child site's change may show only after
    replication, [UNCONFIRMED]) is re-read, with backoff from `visibility_backoff` doubling up
    to `max_backoff`, for at most this many seconds before it is reported not visible
    (`cmproxy.visibility`). Only a re-read showing the old value waits: one showing the new
    value, or anyone else's, decides at once, so a site without lag never waits. 0 turns
    the tolerance off: a re-read still showing the old value is a failed verification, as it
    is when nothing lags.
    """

    attempts: int = 4
    deadline: float = 60.0
    initial_backoff: float = 0.5
    max_backoff: float = 8.0
    jitter: float = 0.5
    visibility_timeout: float = 30.0
    visibility_backoff: float = 0.25
    sleep: Callable[[float], None] = attrs.field(default=time.sleep, eq=False, repr=False)
    clock: Callable[[], float] = attrs.field(default=time.monotonic, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.attempts < 1:
            raise ValidationError("retry.attempts", self.attempts, "must be at least 1")
        if self.deadline < 0:
            raise ValidationError("retry.deadline", self.deadline, "must not be negative")
        if self.visibility_timeout < 0:
            raise ValidationError(
                "retry.visibility_timeout", self.visibility_timeout, "must not be negative"
            )

    @classmethod
    def for_tests(
        cls, attempts: int = 4, deadline: float = 30.0, visibility_timeout: float = 0.0
    ) -> RetryPolicy:
        """No backoff, no sleeping: retries happen at once (stamina's `set_testing` idea).

        Without sleeping there is no waiting for a lagging read either: `visibility_timeout`
        defaults to 0 (a test of lag passes a policy that really sleeps)."""
        return cls(
            attempts=attempts,
            deadline=deadline,
            initial_backoff=0.0,
            max_backoff=0.0,
            jitter=0.0,
            sleep=lambda _s: None,
            visibility_timeout=visibility_timeout,
        )

    @classmethod
    def never(cls) -> RetryPolicy:
        return cls(attempts=1)

    def _wait(self, retry_state: tenacity.RetryCallState) -> float:
        n = retry_state.attempt_number
        base = min(self.max_backoff, self.initial_backoff * (2 ** (n - 1)))
        return base + random.uniform(0, self.jitter) if base or self.jitter else 0.0

    def call(
        self,
        fn: Callable[[], T],
        *,
        operation: str,
        idempotent: bool,
        on_retry: Callable[[RetryEvent], None] | None = None,
        transient: Callable[[BaseException], bool] = is_transient,
    ) -> T:
        """Run `fn`, retrying transient failures if `idempotent`; raise the last real error."""
        if not idempotent:
            return fn()
        start = self.clock()

        def stop(retry_state: tenacity.RetryCallState) -> bool:
            if retry_state.attempt_number >= self.attempts:
                return True
            upcoming = retry_state.upcoming_sleep or 0.0
            return self.clock() - start + upcoming > self.deadline

        def before_sleep(retry_state: tenacity.RetryCallState) -> None:
            outcome = retry_state.outcome
            error = outcome.exception() if outcome is not None else None
            event = RetryEvent(
                operation=operation,
                attempt=retry_state.attempt_number,
                error=f"{type(error).__name__}: {error}",
                wait=retry_state.upcoming_sleep or 0.0,
            )
            log.warning("retrying %s after attempt %d: %s", operation, event.attempt, event.error)
            if on_retry is not None:
                on_retry(event)

        retrying = tenacity.Retrying(
            stop=stop,
            wait=self._wait,
            retry=tenacity.retry_if_exception(transient),
            sleep=self.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        return retrying(fn)


#: Backoff while waiting for a WinRM shell (the quota is full): seconds, doubling to the cap.
QUOTA_BACKOFF = (0.25, 2.0)


def wait_for_quota(fn: Callable[[], T], *, deadline: float, what: str) -> T:
    """Run `fn` (which opens a shell), again while it raises QuotaExceededError, for up to
    `deadline` seconds: shells free up as other sessions close or the endpoint's idle timeout
    deletes forgotten ones. Warns once, then logs each further wait at debug level; the last
    QuotaExceededError surfaces."""
    warned = False

    def before_sleep(state: tenacity.RetryCallState) -> None:
        nonlocal warned
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        log.log(
            logging.DEBUG if warned else logging.WARNING,
            "waiting up to %gs for a WinRM shell (%s): %s",
            deadline,
            what,
            error,
        )
        warned = True

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_delay(deadline),
        wait=tenacity.wait_exponential(multiplier=QUOTA_BACKOFF[0], max=QUOTA_BACKOFF[1])
        + tenacity.wait_random(0, QUOTA_BACKOFF[0]),
        retry=tenacity.retry_if_exception_type(QuotaExceededError),
        before_sleep=before_sleep,
        reraise=True,
    )
    return retrying(fn)
