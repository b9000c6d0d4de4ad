"""Pod creation rate limiting: one token bucket for the whole operator.

A burst of runs (a schedule firing, a CI storm, a 5,000-step fan-out) would
otherwise create pods as fast as the API server answers, and a busy server
answers with 429 Too Many Requests. Every Pod/Job creation of every run
first takes a token from the operator's :class:`TokenBucket`
(``Runtime.pod_limiter``): ``rate`` tokens per second refill it, up to
``burst``. The default is generous (50/s, burst 100): it smooths storms and
is never noticed by ordinary runs.

A 429 the server sends anyway is handled where it arrives: the client
retries it after its Retry-After (:mod:`szal.runners.kubernetes.client`),
and one still refused after the client's tries is a transient refusal the
applier retries on the next pass (:mod:`szal.runners.kubernetes.applying`):
never an error in a run. :meth:`TokenBucket.hold` lets a caller stop every
creation until a moment (a Retry-After for everyone, not only the request
that got it).

Reservations, not polling: :meth:`TokenBucket.reserve` takes a token now
and says how long to wait for it (the balance may go negative), so waiters
are served in order with one sleep each. The clock is injected; the
arithmetic is tested in virtual time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

__all__ = ["TokenBucket"]


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved; ``rate`` None: unlimited."""

    def __init__(
        self,
        rate: float | None,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate is not None and rate <= 0:
            raise ValueError(f"rate {rate}: must be positive (or None: unlimited)")
        if burst < 1:
            raise ValueError(f"burst {burst}: must be at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._at = clock()
        self._held_until = 0.0
        self.waited = 0.0
        """Seconds callers were made to wait in all (a metric for tests and benchmarks)."""

    def hold(self, until: float) -> None:
        """Start no creation before ``until`` (a Retry-After; on this bucket's clock)."""
        self._held_until = max(self._held_until, until)

    def reserve(self, now: float) -> float:
        """Take one token at ``now``; seconds to wait before using it (0: at once)."""
        if self.rate is None:
            return max(0.0, self._held_until - now)
        elapsed = max(0.0, now - self._at)
        self._at = max(self._at, now)
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate)
        self._tokens -= 1.0
        wait = 0.0 if self._tokens >= 0 else -self._tokens / self.rate
        return max(wait, self._held_until - now)

    async def acquire(self) -> None:
        """Wait for a token (one sleep at most)."""
        wait = self.reserve(self._clock())
        if wait > 0:
            self.waited += wait
            await self._sleep(wait)
