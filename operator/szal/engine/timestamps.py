"""RFC 3339 timestamps in UTC with milliseconds, and back.

The engine works in float seconds since the epoch (``now`` is passed in);
the status shows ``2026-11-24T20:01:02.345Z``.
"""

from __future__ import annotations

from datetime import UTC, datetime


def format_timestamp(epoch: float) -> str:
    """``1795636862.345`` -> ``2026-11-24T20:01:02.345Z``."""
    moment = datetime.fromtimestamp(epoch, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_timestamp(text: str) -> float:
    """Inverse of :func:`format_timestamp`; also accepts Kubernetes' second-resolution form."""
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    return datetime.fromisoformat(text).timestamp()
