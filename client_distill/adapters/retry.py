"""When an adapter tries again: transient failures (:class:`~client_distill.adapters.errors.TransientError`:
429, 503, other 5xx, connection errors, timeouts) are retried with backoff that honours the vendor's
``Retry-After``, until a deadline or an attempt count runs out; anything else ends the call at once."""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, stop_after_delay
from tenacity.wait import wait_exponential_jitter

from client_distill.adapters.errors import TransientError

#: longest ``Retry-After`` we obey as given; longer hints are capped so a run never stalls for hours
MAX_RETRY_AFTER_S = 60.0


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: either delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


_BACKOFF = wait_exponential_jitter(multiplier=0.25, max=10.0, jitter=0.5)


def _wait_for(state: RetryCallState) -> float:
    """Backoff: the vendor's ``Retry-After`` plus a little jitter when given, else 0.25 s doubling per
    attempt up to 10 s, plus up to 0.5 s of jitter (so many clients that failed together do not
    return together)."""
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, TransientError) and exc.retry_after is not None:
        return exc.retry_after + random.uniform(0.0, 0.25)
    return _BACKOFF(state)


class RetryPolicy:
    """Retries transient failures for at most ``deadline_s`` seconds and ``max_attempts`` attempts,
    waiting with ``sleep`` (tests pass one that records the waits asked for and returns at once);
    :attr:`retries` counts the retries, for progress and reports. Before each wait ``on_wait`` (when
    set) is told, in words, what failed and how long the policy will go on, so a progress line can say
    what a client that looks stuck is waiting for."""

    def __init__(
        self,
        deadline_s: float = 600.0,
        max_attempts: int = 30,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_wait: Callable[[str], None] | None = None,
    ) -> None:
        self.deadline_s = deadline_s
        self.max_attempts = max_attempts
        self.sleep = sleep
        self.on_wait = on_wait
        self.retries = 0

    async def call(self, call: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Await ``call(*args)`` (an async function: tenacity runs plain callables synchronously),
        retrying transient failures."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(TransientError),
            wait=_wait_for,
            stop=stop_after_delay(self.deadline_s) | stop_after_attempt(self.max_attempts),
            before_sleep=self._count,
            sleep=self.sleep,
            reraise=True,
        )
        return await retrying(call, *args)

    def _count(self, state: RetryCallState) -> None:
        self.retries += 1
        if self.on_wait is not None:
            self.on_wait(waiting_text(state, self.deadline_s, self.max_attempts))


def waiting_text(state: RetryCallState, deadline_s: float, max_attempts: int) -> str:
    """What a retry is waiting for: the failure, the wait, and when the policy gives up (whichever of
    the deadline and the attempt count comes first)."""
    exc = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    left = max(deadline_s - (state.seconds_since_start or 0.0), 0.0)
    return (
        f"{exc}; retry {state.attempt_number} of at most {max_attempts - 1} in {wait:.1f} s, "
        f"giving up within {left:.0f} s"
    )
