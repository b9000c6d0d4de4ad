"""Noticing a sick cluster: API write errors classified, counted, logged without flooding.

A 5,000-step run once filled etcd's quota and the operator logged nothing
(issue 12): pod creations refused with 5xx were retried quietly, and every
run's status write failed with its own traceback or not at all. Now every
write error that says the cluster itself is unwell goes through
:meth:`ApiHealth.failed`:

* it is classified by :func:`classify_write_error` into a
  :class:`WriteErrorKind`: ``etcd-space-exceeded`` (the message carries
  ``etcdserver: mvcc: database space exceeded``: etcd's quota is full and
  every write fails until someone compacts and defragments it),
  ``throttled`` (429), ``server-error`` (other 5xx) and ``unreachable``
  (no answer at all). Other errors (a 409, a 422) are about one object,
  not the cluster, and are handled where they happen;
* it is counted per kind (``szal_api_write_errors_total{kind}`` on
  ``/metrics``);
* it is logged at WARNING the first time per kind, then at most once per
  ``log_interval`` (60 s) per kind, with the number of errors not logged
  in between: a thousand runs failing together make one line a minute;
* :meth:`ApiHealth.should_note` says when the affected run gets a Warning
  Event (reason ``ApiWriteFailing``): once per run and kind per interval.
  The Event is a write too, so it is best effort (with etcd full, it fails
  as well; the log and the metric are what remain).

The client has already retried 429, 5xx and connection errors with its
own backoff before any of this; the reconciler then backs off per run,
doubling from ``retry_delay`` to ``max_retry_delay`` (never spinning hot).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from szal.runners.kubernetes.client import ApiError

logger = logging.getLogger(__name__)

ETCD_SPACE_EXCEEDED = "etcdserver: mvcc: database space exceeded"
API_WRITE_FAILING = "ApiWriteFailing"
"""Reason of the Warning Event a run gets while its writes fail for a cluster-wide reason."""


class WriteErrorKind(StrEnum):
    """What kind of cluster trouble a write error shows."""

    ETCD_SPACE_EXCEEDED = "etcd-space-exceeded"
    THROTTLED = "throttled"
    SERVER_ERROR = "server-error"
    UNREACHABLE = "unreachable"


_ADVICE = {
    WriteErrorKind.ETCD_SPACE_EXCEEDED: "etcd's quota is full: every write fails until "
    "etcd is compacted and defragmented and its alarm disarmed",
    WriteErrorKind.THROTTLED: "the API server is throttling this operator (429)",
    WriteErrorKind.SERVER_ERROR: "the API server answers with server errors (5xx)",
    WriteErrorKind.UNREACHABLE: "the API server cannot be reached",
}


def classify_write_error(error: BaseException) -> WriteErrorKind | None:
    """The cluster trouble ``error`` shows, or None for an error about one object."""
    if not isinstance(error, ApiError):
        return None
    if ETCD_SPACE_EXCEEDED in error.message or ETCD_SPACE_EXCEEDED in str(error):
        return WriteErrorKind.ETCD_SPACE_EXCEEDED
    if error.status == 0:
        return WriteErrorKind.UNREACHABLE
    if error.status == 429:
        return WriteErrorKind.THROTTLED
    if error.status >= 500:
        return WriteErrorKind.SERVER_ERROR
    return None


@dataclass
class ApiHealth:
    """Counts and rate-limited logs of the operator's failing writes (one per operator)."""

    clock: Callable[[], float] = time.monotonic
    log_interval: float = 60.0
    """Seconds between two log lines (and two Events per run) of one kind."""
    counts: Counter[WriteErrorKind] = field(default_factory=Counter)
    """Write errors seen, by kind (the metric)."""
    _logged_at: dict[WriteErrorKind, float] = field(default_factory=dict)
    _unlogged: Counter[WriteErrorKind] = field(default_factory=Counter)
    _noted_at: dict[tuple[str, WriteErrorKind], float] = field(default_factory=dict)

    def failed(self, error: BaseException, what: str) -> WriteErrorKind | None:
        """Count (and maybe log) ``error`` met doing ``what``; its kind, or None if not one."""
        kind = classify_write_error(error)
        if kind is None:
            return None
        self.counts[kind] += 1
        now = self.clock()
        last = self._logged_at.get(kind)
        if last is not None and now - last < self.log_interval:
            self._unlogged[kind] += 1
            return kind
        self._logged_at[kind] = now
        unlogged, self._unlogged[kind] = self._unlogged[kind], 0
        since = f" ({unlogged} more since the last report)" if unlogged else ""
        logger.warning("API writes failing, %s: %s: %s%s", _ADVICE[kind], what, error, since)
        return kind

    def should_note(self, run_uid: str, kind: WriteErrorKind) -> bool:
        """Whether run ``run_uid`` should get a Warning Event about ``kind`` now."""
        now = self.clock()
        last = self._noted_at.get((run_uid, kind))
        if last is not None and now - last < self.log_interval:
            return False
        self._noted_at[(run_uid, kind)] = now
        return True

    def forget(self, run_uid: str) -> None:
        """Drop what is kept about a run that is gone."""
        for key in [k for k in self._noted_at if k[0] == run_uid]:
            del self._noted_at[key]


def advice(kind: WriteErrorKind) -> str:
    """A sentence saying what ``kind`` means for the cluster."""
    return _ADVICE[kind]
