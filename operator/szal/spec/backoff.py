"""BackoffSettings: how long to wait before trying again, for everything that retries.

Three parts of Szál retry, each with its own knobs but one formula:

* a step's ``retries`` (:class:`szal.engine.workflow.RetryPolicy`, from the
  spec's ``backoff``/``delay``/``maxDelay``, whose ``settings`` are this
  type): Fixed 1 s by default, no cap, never jittered;
* the history mirror's failed writes (``MirrorSettings.backoff`` in
  :mod:`szal.history.mirror`): Exponential from 0.2 s to 30 s, jittered;
* the Kubernetes client's transient errors (``RetrySettings.backoff`` in
  :mod:`szal.runners.kubernetes.client`): Exponential from 0.05 s to 5 s.

It lives in ``spec``, the lowest layer, because the engine, the stores and
the runners all use it, and the kind names are the spec's wire values.

Decisions:

* **Pure.** :meth:`BackoffSettings.delay_after` takes the random draw as an
  argument instead of calling :mod:`random` itself, so the engine stays
  deterministic (it never jitters) and tests can pin the draw.
* **Jitter takes off, never adds**: a delay is at most the formula's value,
  so ``max_delay`` stays a true cap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Backoff = Literal["Fixed", "Linear", "Exponential"]
"""How a delay grows with the number of failed tries (the spec's ``retries.backoff``)."""


@dataclass(frozen=True, slots=True)
class BackoffSettings:
    """Delay before the next try: Fixed = delay, Linear = delay·n,
    Exponential = delay·2^(n-1) after n failed tries, capped by ``max_delay``."""

    kind: Backoff = "Fixed"
    """How the delay grows: Fixed, Linear or Exponential."""
    delay: float = 1.0
    """Seconds before the second try (after the first failure)."""
    max_delay: float | None = None
    """Cap on one delay, in seconds; None: no cap."""
    jitter: float = 0.0
    """Fraction of a delay that may be taken off at random: 0.5 waits between
    50 % and 100 % of it (spreads out clients that failed together)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"backoff jitter must be between 0 and 1, got {self.jitter}")

    def delay_after(self, failures: int, draw: float = 1.0) -> float:
        """Seconds to wait after ``failures`` failed tries (1 for the first).

        ``draw`` in [0, 1] picks the jitter (pass ``random.random()``); with
        the default 1.0 or no ``jitter`` the delay is exactly the formula's.
        """
        if self.kind == "Linear":
            value = self.delay * failures
        elif self.kind == "Exponential":
            value = self.delay * (2.0 ** (failures - 1))
        else:
            value = self.delay
        if self.max_delay is not None:
            value = min(value, self.max_delay)
        return value * (1.0 - self.jitter * (1.0 - draw))
